// cultural-music page: choose or drop a recording, upload it with progress, show the answer.
// Vanilla JS, talks only to this server (/api/model, /api/predict).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8c8c8c"];
  let classes = [];
  let limits = null;
  let audioUrl = null;
  let busy = false;

  function colour(label) {
    const i = classes.indexOf(label);
    if (i < 0) return "#8c8c8c";
    return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137) % 360} 55% 50%)`;
  }

  function pct(p) {
    return `${(100 * p).toFixed(1)}%`;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return `${h ? h + ":" : ""}${mm}:${String(r).padStart(2, "0")}`;
  }

  function span(seconds) {
    const nb = "\u00a0";  // keep number and unit on one line
    if (seconds < 120) return `${Math.round(seconds)}${nb}s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)}${nb}min`;
    return `${+(seconds / 3600).toFixed(1)}${nb}h`;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function show(id, on) {
    $(id).hidden = !on;
  }

  function showError(message) {
    $("error").textContent = message;
    show("error", true);
  }

  function setBusy(label, fraction) {
    show("busy", true);
    $("busy-label").textContent = label;
    const bar = $("progress-bar");
    bar.classList.toggle("indeterminate", fraction === null);
    bar.style.width = fraction === null ? "" : `${Math.round(100 * fraction)}%`;
  }

  // The model's own word for its labels (model.json "label_noun", e.g. "bird species"), else "class".
  function applyNoun(noun) {
    const cap = noun.charAt(0).toUpperCase() + noun.slice(1);
    if (noun !== "class") {
      $("title").textContent = `Name the ${noun} of a recording`;
      document.title = `cultural-music: name the ${noun}`;
    }
    $("subtitle").textContent = `Drop a recording; the model names its ${noun} and says how sure it is.`;
    $("all-classes").textContent = `Every ${noun}`;
    $("label-heading").textContent = cap;
  }

  async function loadModel() {
    try {
      const r = await fetch("/api/model");
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const info = await r.json();
      classes = info.classes || [];
      limits = info.limits || null;
      const noun = typeof info.label_noun === "string" && info.label_noun ? info.label_noun : "class";
      applyNoun(noun);
      const version = info.version ? ` ${info.version}` : "";
      $("model-line").textContent = `Model: ${info.name}${version} · ${classes.length} classes: ${classes.join(", ")}`;
      if (limits) {
        $("limits").textContent = `WAV, FLAC, OGG or MP3 · up to ${limits.max_upload_mb}\u00a0MB and ${span(limits.max_duration_s)}`;
      }
    } catch (err) {
      $("model-line").textContent = `Could not describe the model (${err.message}).`;
    }
  }

  function renderBars(probabilities) {
    const list = $("bars");
    list.replaceChildren();
    const rows = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of rows) {
      const li = el("li", "bar-row");
      li.append(el("span", "bar-name", label));
      const track = el("span", "bar-track");
      const fill = el("span", "bar-fill");
      fill.style.width = `${Math.max(0, Math.min(100, 100 * p))}%`;
      fill.style.background = colour(label);
      track.append(fill);
      li.append(track, el("span", "bar-value", pct(p)));
      li.setAttribute("aria-label", `${label}: ${pct(p)}`);
      list.append(li);
    }
  }

  function renderTimeline(segments, duration) {
    const ok = Array.isArray(segments) && segments.length > 1;
    show("timeline-section", ok);
    if (!ok) return;
    const total = Math.max(duration, segments[segments.length - 1].end) || 1;
    const track = $("timeline");
    track.replaceChildren();
    const body = $("segments");
    body.replaceChildren();
    const seen = [];
    for (const s of segments) {
      const seg = el("button", "segment");
      seg.type = "button";
      seg.style.left = `${(100 * s.start) / total}%`;
      seg.style.width = `${(100 * (s.end - s.start)) / total}%`;
      seg.style.background = colour(s.label);
      seg.title = `${s.label}: ${clock(s.start)}–${clock(s.end)} (${pct(s.confidence)})`;
      seg.setAttribute("aria-label", seg.title);
      seg.addEventListener("click", () => {
        const player = $("player");
        player.currentTime = s.start;
        player.play().catch(() => {});
      });
      track.append(seg);
      if (!seen.includes(s.label)) seen.push(s.label);
      const tr = el("tr");
      tr.append(el("td", "", clock(s.start)), el("td", "", clock(s.end)), el("td", "", s.label),
                el("td", "", pct(s.confidence)));
      body.append(tr);
    }
    track.setAttribute("aria-label", `Timeline of ${segments.length} segments over ${clock(total)}`);
    const axis = $("axis");
    axis.replaceChildren();
    for (let k = 0; k <= 4; k++) {
      const tick = el("span", "tick", clock((total * k) / 4));
      tick.style.left = `${25 * k}%`;
      axis.append(tick);
    }
    const legend = $("legend");
    legend.replaceChildren();
    for (const label of seen) {
      const li = el("li");
      const sw = el("span", "swatch");
      sw.style.background = colour(label);
      li.append(sw, document.createTextNode(label));
      legend.append(li);
    }
    $("segments-summary").textContent = `Segments (${segments.length})`;
  }

  function renderResult(r) {
    $("file-name").textContent = r.filename;
    $("label").textContent = r.label;
    $("label").classList.toggle("is-uncertain", !!r.uncertain);
    $("confidence").textContent = `${pct(r.confidence)} confidence`;
    const note = $("uncertain-note");
    if (r.uncertain && r.top && r.top.length) {
      note.textContent = `The model is not sure; closest: ${r.top[0].label} (${pct(r.top[0].probability)}).`;
      show("uncertain-note", true);
    } else {
      show("uncertain-note", false);
    }
    renderBars(r.probabilities);
    renderTimeline(r.timeline, r.duration);
    const model = r.model ? `model ${r.model.name}${r.model.version ? " " + r.model.version : ""} · ` : "";
    const clips = `${r.n_clips} clip${r.n_clips === 1 ? "" : "s"}`;
    $("meta").textContent = `${clock(r.duration)} long · ${clips} · ${r.format.toUpperCase()} · ${model}answered in ${r.elapsed.toFixed(1)} s`;
    show("result", true);
  }

  function upload(file) {
    if (busy) return;
    show("error", false);
    show("result", false);
    if (limits && file.size > limits.max_upload_mb * 1048576) {
      showError(`${file.name}: ${(file.size / 1048576).toFixed(1)} MB is larger than the ${limits.max_upload_mb} MB this server accepts.`);
      return;
    }
    if (file.size === 0) {
      showError(`${file.name}: empty file (0 bytes).`);
      return;
    }
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = URL.createObjectURL(file);
    $("player").src = audioUrl;

    busy = true;
    $("drop").classList.add("is-busy");
    setBusy(`Uploading ${file.name}…`, 0);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/predict");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setBusy(`Uploading ${file.name}… ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total);
    };
    xhr.upload.onload = () => setBusy("Listening to the recording…", null);
    const done = () => {
      busy = false;
      $("drop").classList.remove("is-busy");
      show("busy", false);
      $("file").value = "";
    };
    xhr.onload = () => {
      done();
      if (xhr.status === 200 && xhr.response) {
        renderResult(xhr.response);
      } else {
        const detail = xhr.response && xhr.response.detail;
        showError(typeof detail === "string" ? detail : `The server answered ${xhr.status}.`);
      }
    };
    xhr.onerror = () => {
      done();
      showError("The upload failed: the server closed the connection (is the file too large, or the server stopped?).");
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  }

  function setup() {
    const drop = $("drop");
    $("file").addEventListener("change", (e) => {
      if (e.target.files.length) upload(e.target.files[0]);
    });
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (e) => {
        e.preventDefault();
        drop.classList.add("is-over");
      });
    }
    for (const type of ["dragleave", "drop"]) {
      drop.addEventListener(type, (e) => {
        e.preventDefault();
        drop.classList.remove("is-over");
      });
    }
    drop.addEventListener("drop", (e) => {
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) upload(files[0]);
    });
    drop.addEventListener("submit", (e) => e.preventDefault());
    // A file dropped outside the zone must not make the browser navigate away from the page.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
    loadModel();
  }

  setup();
})();
