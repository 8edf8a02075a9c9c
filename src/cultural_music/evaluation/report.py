"""``report.html``: one self-contained evaluation report (inline CSS, PNGs as base64 data URIs).

Nothing in it is fetched from the network: no script, font or style sheet from elsewhere, so it
opens the same offline, attached to an e-mail or years later.  Sections, in order: headline
numbers, class table, training curves, confusion matrices, ROC and PR curves, calibration,
error analysis, data summary, training settings, model choice (``--model auto``: the candidates'
cross-validated scores and why the winner won), notes (skipped files, unknown folders).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from cultural_music.atomic import atomic_write_text

__all__ = ["write_report", "render_report", "SECTIONS"]

SECTIONS = (
    ("headline", "Headline numbers"),
    ("classes", "Per-class results"),
    ("curves", "Training curves"),
    ("confusion", "Confusion matrices"),
    ("roc-pr", "ROC and precision-recall"),
    ("calibration", "Calibration"),
    ("errors", "Error analysis"),
    ("data", "Data summary"),
    ("settings", "Training settings"),
    ("choice", "Model choice"),
    ("notes", "Notes"),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2933;background:#f5f7fa;margin:0}
main{max-width:1120px;margin:0 auto;padding:24px 32px 64px;background:#fff;box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:36px 0 12px;padding-bottom:6px;border-bottom:2px solid #e4e7eb}
h3{font-size:15px;margin:18px 0 8px;color:#3e4c59}
.sub{color:#616e7c;font-size:14px;margin:0 0 16px}
nav{font-size:13px;margin:8px 0 4px}nav a{color:#2563eb;text-decoration:none;margin-right:14px;white-space:nowrap}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0 18px}
.card{flex:1 1 150px;border:1px solid #e4e7eb;border-radius:8px;padding:12px 14px;background:#fafbfc}
.card .v{font-size:28px;font-weight:600}.card .l{font-size:12px;color:#616e7c;text-transform:uppercase;letter-spacing:.04em}
.card.main{background:#eff6ff;border-color:#bfdbfe}.card.main .v{color:#1d4ed8}
.card .s{font-size:12px;color:#616e7c;margin-top:2px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 14px}
th,td{padding:5px 10px;border-bottom:1px solid #e4e7eb;text-align:right}
th{background:#f5f7fa;font-weight:600}td.t,th.t{text-align:left}
tr.tot td{font-weight:600;border-top:2px solid #cbd2d9}
.bar{display:inline-block;height:9px;background:#93c5fd;border-radius:2px;vertical-align:middle;margin-left:6px}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;flex:1 1 440px}figure.wide{flex:1 1 100%;max-width:860px}figure img{max-width:100%;height:auto;border:1px solid #e4e7eb;border-radius:4px}
figcaption{font-size:12px;color:#616e7c;margin-top:4px}
.missing{border:1px dashed #cbd2d9;padding:24px;color:#9aa5b1;font-size:13px;text-align:center}
.note{font-size:13px;color:#3e4c59;background:#fffbeb;border-left:3px solid #f59e0b;padding:8px 12px;margin:8px 0}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.wrong{color:#b91c1c}.ok{color:#15803d}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{0.0 if abs(x) < 0.5 * 10 ** -digits else x:.{digits}f}"  # never "-0.000"
    return _e(x)


def _v(x: Any) -> str:
    """A setting's value: floats to 4 significant digits, the rest as text."""
    return f"{x:.4g}" if isinstance(x, float) else _e(x)


def _img(images: dict[str, Path], key: str, caption: str, *, wide: bool = False) -> str:
    path = images.get(key)
    if path is None or not Path(path).is_file():
        return f'<figure><div class="missing">{_e(caption)}: plot not made in this run</div></figure>'
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img alt="{_e(caption)}" src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>'


def _table(head: list[str], rows: list[list[Any]], *, text_cols: int = 1, left: set[int] | None = None, total: bool = False) -> str:
    """HTML table; the first ``text_cols`` columns (or the ``left`` ones) are left-aligned text."""
    left = set(range(text_cols)) if left is None else left
    th = "".join(f'<th class="t">{_e(h)}</th>' if i in left else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    body = []
    for j, row in enumerate(rows):
        cls = ' class="tot"' if total and j == len(rows) - 1 else ""
        tds = "".join(f'<td class="t">{c}</td>' if i in left else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _headline(m: dict[str, Any]) -> str:
    rec, clip, cal = m["recording"], m["clip"], m.get("calibration", {})
    cards = [
        ("main", "macro-F1 (recordings)", rec["macro_f1"], f"clips: {clip['macro_f1']:.3f}"),
        ("", "accuracy", rec["accuracy"], f"clips: {clip['accuracy']:.3f}"),
        ("", "balanced accuracy", rec["balanced_accuracy"], f"clips: {clip['balanced_accuracy']:.3f}"),
        ("", "majority baseline", rec["baseline_accuracy"], f"always '{rec['baseline_class']}'; macro-F1 {rec['baseline_macro_f1']:.3f}"),
    ]
    html_cards = '<div class="cards">' + "".join(f'<div class="card {c}"><div class="l">{_e(l)}</div><div class="v">{v:.3f}</div><div class="s">{_e(s)}</div></div>'
                         for c, l, v, s in cards) + "</div>"
    keys = [("macro_f1", "macro-F1 (headline)"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
            ("macro_precision", "macro precision"), ("macro_recall", "macro recall"), ("log_loss", "log loss (nats)"),
            ("baseline_accuracy", "majority-class baseline accuracy"), ("baseline_macro_f1", "majority-class baseline macro-F1")]
    rows = [[_e(label), _f(rec[k]), _f(clip[k])] for k, label in keys]
    if cal:
        rows.append(["expected calibration error", _f(cal["recording"]["ece_after"]), _f(cal["clip"]["ece_after"])])
    rows.append(["items scored", str(rec["n"]), str(clip["n"])])
    note = ('<p class="sub">Recording level: a file\'s clip probabilities averaged, each weighted by its seconds of real audio (exactly what <span class="mono">predict</span> '
            "answers). Clip level: every fixed-length clip on its own. Macro-F1 weighs every class equally.</p>")
    return html_cards + note + _table(["metric", "recordings", "clips"], rows)


def _class_table(m: dict[str, Any]) -> str:
    rec, clip = m["recording"]["per_class"], m["clip"]["per_class"]
    rows = []
    for name, c in rec.items():
        bar = f'<span class="bar" style="width:{int(60 * c["f1"])}px"></span>'
        rows.append([_e(name), _f(c["precision"]), _f(c["recall"]), f"{_f(c['f1'])}{bar}", str(c["support"]),
                     _f(c["roc_auc"]), _f(c["average_precision"]), _f(clip[name]["f1"]), str(clip[name]["support"])])
    head = ["class", "precision", "recall", "F1", "recordings", "ROC AUC", "AP", "clip F1", "clips"]
    return _table(head, rows) + '<p class="sub">Precision, recall, F1, AUC and AP at recording level; a class never predicted has precision 0.</p>'


def _calibration(m: dict[str, Any], images: dict[str, Path]) -> str:
    cal = m.get("calibration")
    if not cal:
        return '<p class="sub">No calibration data.</p>'
    rows = [[level, _f(cal[level]["ece_before"]), _f(cal[level]["ece_after"]), _f(cal[level]["nll_before"]),
             _f(cal[level]["nll_after"])] for level in ("recording", "clip")]
    t = cal["temperature"]
    effect = "softens over-confident answers" if t > 1 else "sharpens under-confident answers" if t < 1 else "changes nothing"
    text = (f'<p class="sub">Temperature scaling fitted on the validation split: logits are divided by '
            f'<b>T = {t:.3f}</b> before the softmax; this {effect}; it never changes the predicted class. '
            f"Expected calibration error over {cal['n_bins']} equal-width confidence bins: 0 means a confidence of "
            "80% is right 80% of the time. Values below are on the evaluated data.</p>")
    table = _table(["level", "ECE, T = 1", f"ECE, T = {cal['temperature']:.2f}", "NLL, T = 1", f"NLL, T = {cal['temperature']:.2f}"], rows)
    return text + table + f'<div class="figs">{_img(images, "reliability", "Reliability diagrams (clips, recordings)")}</div>'


def _errors(m: dict[str, Any], predictions: list[dict[str, Any]], worst: int) -> str:
    wrong = [p for p in predictions if not p["correct"]]
    head = (f'<p class="sub">{len(wrong)} of {len(predictions)} recordings wrong. The most confident mistakes first; every '
            f'recording is in <span class="mono">{_e(m.get("predictions_csv", "test_predictions.csv"))}</span>.</p>')
    if not wrong:
        return head
    rows = [[f'<span class="mono">{_e(p["path"])}</span>', _e(p["true"]), f'<span class="wrong">{_e(p["predicted"])}</span>',
             _f(p["confidence"]), _e(", ".join(f"{c} {q:.2f}" for c, q in p["top3"]))] for p in wrong[:worst]]
    return head + _table(["recording", "true", "predicted", "confidence", "top 3"], rows, left={0, 1, 2, 4})


def _data_summary(meta: dict[str, Any], m: dict[str, Any]) -> str:
    per = meta.get("data", {}).get("per_class", {})
    out = []
    if per:
        splits = [s for s in ("train", "val", "test") if any(s in v for v in per.values())]
        rows, tot = [], {s: [0, 0.0, 0] for s in splits}
        for name in sorted(per):
            cells = []
            for s in splits:
                c = per[name].get(s, {"files": 0, "minutes": 0.0, "clips": 0})
                tot[s][0] += c["files"]
                tot[s][1] += c["minutes"]
                tot[s][2] += c["clips"]
                cells.append(f"{c['files']} / {c['minutes']:.1f} / {c['clips']}")
            rows.append([_e(name), *cells])
        rows.append(["all", *(f"{n} / {mi:.1f} / {c}" for n, mi, c in tot.values())])
        out.append(f'<p class="sub">Training data <span class="mono">{_e(meta.get("data", {}).get("data_dir", ""))}</span>: '
                   "files / minutes / clips per class and split. Files of one recording group stay in one split.</p>")
        out.append(_table(["class", *(f"{s} (files / min / clips)" for s in splits)], rows, total=True))
    if m.get("data") != "test split":
        rows = [[_e(n), str(c["support"]), str(m["clip"]["per_class"][n]["support"])] for n, c in m["recording"]["per_class"].items()]
        out.append(f'<h3>Evaluated folder <span class="mono">{_e(m.get("data"))}</span></h3>')
        out.append(_table(["class", "recordings", "clips"], rows))
    return "".join(out) or '<p class="sub">No data summary in model.json.</p>'


def _settings(meta: dict[str, Any]) -> str:
    out = []
    training = meta.get("training", {})
    extra = {"model": meta.get("model", {}).get("name"), "classes": ", ".join(meta.get("classes", [])),
             "calibration temperature": meta.get("calibration", {}).get("temperature"),
             "uncertain threshold": meta.get("uncertain", {}).get("threshold"),
             "package version": meta.get("package_version"), "created": meta.get("created")}
    rows = [[_e(k), _v(v)] for k, v in {**extra, **training}.items() if v is not None]
    out.append("<h3>Run</h3>" + _table(["setting", "value"], rows, text_cols=2))
    for section, values in meta.get("settings", meta.get("config", {})).items():  # settings: only what applies
        rows = [[_e(k), _v(v)] for k, v in values.items()]
        out.append(f"<h3>config: {_e(section)}</h3>" + _table(["setting", "value"], rows, text_cols=2))
    return f'<div class="figs">{"".join(f"<div>{o}</div>" for o in out)}</div>'


def _choice(meta: dict[str, Any]) -> str:
    """model.json's ``model_choice``: one row per candidate (mean ± std and per-fold macro-F1,
    head settings, seconds) and the reason the winner won."""
    c = meta.get("model_choice")
    if not c:
        return (f'<p class="sub">The model was named (<span class="mono">--model {_e(meta.get("model", {}).get("name"))}'
                "</span>): no comparison was made.</p>")
    rows = []
    for r in c.get("candidates", []):
        mark = " (chosen)" if r["model"] == c["winner"] else ""
        rows.append([f"<b>{_e(r['model'])}</b>{mark}" if mark else _e(r["model"]), f"{_f(r['mean_macro_f1'])} ± {_f(r['std_macro_f1'])}",
                     _e(" ".join(f"{f:.3f}" for f in r["fold_macro_f1"])), _v(r["C"]) if r["C"] is not None else "–",
                     _e(r["class_weighting"] or "–"), _f(r["seconds"], 1)])
    text = (f'<p class="sub">Chosen by <b>{_e(c.get("scored_by"))}</b>: {_e(c.get("folds"))} folds over '
            f'{_e(c.get("recordings"))} training recordings (validation and test files took no part). A mean within '
            f'{_e(c.get("tie_tolerance"))} of the best is a tie, won by the cheaper model '
            f'(cheapest first: {_e(", ".join(c.get("cost_order", [])))}).</p>')
    table = _table(["candidate", "macro-F1 mean ± std", "per fold", "C", "class weighting", "seconds"], rows) if rows else ""
    return text + table + f'<div class="note"><b>Why:</b> {_e(c.get("reason"))}</div>'


def _notes(m: dict[str, Any]) -> str:
    items = []
    if m.get("unknown_classes"):
        items.append(f"Folders not among the model's classes, left out of every metric: {_e(', '.join(m['unknown_classes']))}.")
    for s in m.get("skipped", []):
        items.append(f'Skipped <span class="mono">{_e(s["path"])}</span>: {_e(s["reason"])}')
    if not items:
        return '<p class="sub">No file skipped; every evaluated folder is a model class.</p>'
    return "".join(f'<div class="note">{i}</div>' for i in items)


def _curves(meta: dict[str, Any], images: dict[str, Path]) -> str:
    """Training curves of an epoch loop; for a full-batch L-BFGS fit, its one result."""
    t = meta.get("training", {})
    if t.get("fit") == "lbfgs":
        return (f'<div class="figs">{_img(images, "accuracy", "Accuracy of the fit")}{_img(images, "loss", "Loss of the fit")}</div>'
                f'<p class="sub">Fitted by full-batch L-BFGS ({_e(t.get("iterations"))} iterations): one result, not an epoch '
                f'loop, so there is no training curve. Final training loss {_f(t.get("final_train_loss"), 4)}, validation '
                f'loss {_f(t.get("val_loss"), 4)}, validation accuracy {_f(t.get("val_accuracy"))}.</p>')
    return (f'<div class="figs">{_img(images, "accuracy", "Accuracy per epoch")}{_img(images, "loss", "Loss per epoch")}</div>'
            '<p class="sub">The dashed line marks the epoch kept (lowest validation loss).</p>')


def _deployed(m: dict[str, Any]) -> str:
    """What the deployed model saw, when it was refitted on every file after this evaluation."""
    d = m.get("deployed")
    if not d:
        return ""
    per = d.get("files_per_split", {})
    seen = d.get("measured_model_trained_on") or f'the train split ({per.get("train")} files)'
    return (f'<div class="note"><b>Measured before the refit.</b> These numbers are those of the model trained on '
            f'{_e(seen)} and scored here on the test split it never saw. The model deployed '
            f'in this folder was then trained again on every usable file ({_e(d.get("files"))}: train, val and test, '
            f'these test files included) with the settings chosen before; it has no held-out score of its own.</div>')


def render_report(*, metrics: dict[str, Any], meta: dict[str, Any], predictions: list[dict[str, Any]],
                  images: dict[str, Path], title: str = "Evaluation report", worst: int = 15) -> str:
    """The report as one HTML string (see :func:`write_report` for the arguments)."""
    m = metrics
    wide = len(m["classes"]) > 6  # big matrices get a row each, so their numbers stay readable
    sections = {
        "headline": _headline(m),
        "classes": _class_table(m),
        "curves": _curves(meta, images),
        "confusion": f'<div class="figs">{_img(images, "confusion", "Counts (rows: true class)", wide=wide)}'
                     f'{_img(images, "confusion_normalized", "Row-normalised (recall on the diagonal)", wide=wide)}</div>',
        "roc-pr": f'<div class="figs">{_img(images, "roc", "ROC per class")}{_img(images, "pr", "Precision-recall per class")}</div>',
        "calibration": _calibration(m, images),
        "errors": _errors(m, predictions, worst),
        "data": _data_summary(meta, m),
        "settings": _settings(meta),
        "choice": _choice(meta),
        "notes": _notes(m),
    }
    nav = " ".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in SECTIONS)  # spaces: the links may wrap
    body = "".join(f'<section id="{k}"><h2>{_e(t)}</h2>{sections[k]}</section>' for k, t in SECTIONS)
    model = meta.get("model", {}).get("name", "model")
    sub = (f"{_e(model)} · {len(m['classes'])} classes · evaluated on {_e(m.get('data'))} · "
           f"{m['n']} recordings, {m['n_clips']} clips")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}: {_e(model)}</title><style>{_CSS}</style></head><body><main>"
            f'<h1>{_e(title)}</h1><p class="sub">{sub}</p>{_deployed(m)}<nav>{nav}</nav>{body}</main></body></html>\n')


def write_report(path: str | Path, *, metrics: dict[str, Any], meta: dict[str, Any], predictions: list[dict[str, Any]],
                 images: dict[str, Path], model_dir: str | Path | None = None, worst: int = 15) -> Path:
    """Write the self-contained ``report.html`` atomically and return its path.

    Parameters
    ----------
    metrics
        The ``metrics.json`` dict of :func:`~cultural_music.evaluation.evaluate.run_evaluation`.
    meta
        The model's ``model.json`` (data summary per class and split, config, training summary).
    predictions
        Rows of ``test_predictions.csv`` (wrong ones first); the ``worst`` first wrong ones are listed.
    images
        ``{key: png path}`` for ``accuracy``, ``loss``, ``confusion``, ``confusion_normalized``,
        ``roc``, ``pr``, ``reliability``; a missing key shows a placeholder.
    """
    title = "Evaluation report" if model_dir is None else f"Evaluation report: {Path(model_dir).resolve().name}"
    text = render_report(metrics=metrics, meta=meta, predictions=predictions, images=images, title=title, worst=worst)
    atomic_write_text(path, text)
    return Path(path)
