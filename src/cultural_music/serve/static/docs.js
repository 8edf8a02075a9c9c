// Swagger UI for this server's /openapi.json, loaded from this server only.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
