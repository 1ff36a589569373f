// Documents on the spanqa page: uploads (PDF, HTML, DOCX, text) read by the server's extractor, the
// size limits said in the unit the user sees, and "index mode": asking the server's document index
// (POST /v1/ask), each answer shown in its passage with its source and page.
// app.js owns the text mode's asking and answer display; this file adds to it through window.spanqa.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TEXT_FILE = /\.(txt|text|md|markdown|rst)$/i;
  const docs = { limits: null, uploaded: null, indexMode: false, answers: [] };

  const chars = (text) => [...text].length; // code points, as the server counts
  const fmt = (n) => n.toLocaleString("en-US");
  const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1).replace(/\.0$/, "")} MB`;

  async function loadLimits() {
    try {
      docs.limits = (await (await fetch("/v1/model")).json()).limits;
    } catch {
      docs.limits = null;
    }
  }

  /** A message naming the limit in the unit the user sees, or null when the file may be sent. */
  function tooLarge(file) {
    const limits = docs.limits;
    if (!limits || !limits.max_upload_bytes || file.size <= limits.max_upload_bytes) return null;
    if (TEXT_FILE.test(file.name)) {
      return `${file.name} is too long: this server reads at most ${fmt(limits.max_context_chars)} characters of text (the file is ${megabytes(file.size)}).`;
    }
    return `${file.name} is ${megabytes(file.size)}; this server takes files up to ${megabytes(limits.max_upload_bytes)}.`;
  }

  /** The file's text as the server extracts it (the text answers' offsets index), or an error shown. */
  async function upload(file) {
    const { setText, showError } = window.spanqa;
    const refused = tooLarge(file);
    if (refused) return showError(refused);
    const form = new FormData();
    form.append("file", file, file.name);
    $("count").textContent = `reading ${file.name}…`;
    try {
      const response = await fetch("/v1/documents/extract", { method: "POST", body: form });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        $("count").textContent = "";
        return showError(body.message || `the server answered ${response.status}`);
      }
      setIndexMode(false);
      setText(body.text);
      docs.uploaded = { name: body.name, format: body.format, pages: body.pages, text: $("context").value };
      showSource();
    } catch (err) {
      $("count").textContent = "";
      showError(`Cannot read ${file.name}: ${err.message}`);
    }
  }

  /** The uploaded file's name, format and pages under the text, while the text is the file's. */
  function showSource(page) {
    const source = $("source");
    const doc = docs.uploaded;
    if (!doc || doc.text !== window.spanqa.currentText()) {
      source.hidden = true;
      return;
    }
    const pages = doc.pages ? ` · ${doc.pages.length} pages` : "";
    source.textContent = `${doc.name} (${doc.format}${pages})` + (page ? ` · answer on page ${page}` : "");
    source.hidden = false;
  }

  /** 1-based page holding code-point offset `at`, from a [[start, end], ...] page map. */
  function pageOf(pages, at) {
    let found = null;
    pages.forEach(([start, end], i) => {
      if (start <= at && end > start) found = i + 1;
    });
    return found;
  }

  function onHighlight(start) {
    const doc = docs.uploaded;
    showSource(doc && doc.pages ? pageOf(doc.pages, start) : null);
  }

  // ---- index mode ------------------------------------------------------------------------------------

  async function loadIndex() {
    try {
      const response = await fetch("/v1/index");
      if (!response.ok) return;
      const info = await response.json();
      $("mode-index-label").textContent = `the index (${fmt(info.documents)} documents)`;
      $("mode").hidden = false;
    } catch {
      // no index: the page stays in text mode
    }
  }

  function setIndexMode(on) {
    docs.indexMode = on;
    $(on ? "mode-index" : "mode-text").checked = true;
    $("index-view").hidden = !on;
    $("text-tools").hidden = on;
    $("count").hidden = on;
    $("question").placeholder = on ? "Ask a question about the indexed documents…" : "Ask a question about the text…";
    if (on) {
      $("context").hidden = true;
      $("view").hidden = true;
      $("source").hidden = true;
    } else {
      window.spanqa.editing(true);
      showSource();
    }
  }

  async function askIndex() {
    const { el, showError } = window.spanqa;
    const question = $("question").value;
    if (!question.trim()) return showError("Type a question.");
    const result = $("result");
    result.dataset.state = "loading";
    result.replaceChildren(el("p", { class: "hint" }, "Searching the index…"));
    $("index-view").replaceChildren();
    $("ask").disabled = true;
    try {
      const response = await fetch("/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question, top_k: Number($("top-k").value) }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        const wait = response.headers.get("Retry-After");
        return showError((body.message || `the server answered ${response.status}`) + (wait ? ` (retry in ${wait} s)` : ""));
      }
      renderIndexResult(body);
    } catch (err) {
      showError(`Cannot reach the server: ${err.message}`);
    } finally {
      $("ask").disabled = false;
    }
  }

  function citationLine(a) {
    return `${a.doc}${a.page ? ` · page ${a.page}` : ""} · ${a.score.toFixed(2)}`;
  }

  function renderIndexResult(pred) {
    const { el } = window.spanqa;
    const result = $("result");
    docs.answers = pred.answers;
    result.replaceChildren();
    if (!pred.answers.length) {
      result.append(el("div", { class: "no-answer", id: "no-answer" }, el("strong", {}, "Nothing in the index shares a word with the question.")));
      result.dataset.state = "done";
      return;
    }
    if (pred.no_answer) {
      result.append(el("div", { class: "no-answer", id: "no-answer" }, el("strong", {}, "No answer in the indexed documents."),
        el("span", {}, " The best guess is shown in its passage with a dashed line.")));
    }
    const best = pred.answers[0];
    result.append(el("div", { class: pred.no_answer ? "best guess" : "best", id: "best" },
      el("q", { id: "answer-text" }, best.text),
      el("div", { class: "meta" }, el("span", { id: "citation" }, citationLine(best)), el("span", { class: "offsets" }, `[${best.start}:${best.end}]`))));
    if (pred.answers.length > 1) {
      const list = el("ol", { class: "alternatives", id: "alternatives" });
      pred.answers.forEach((a, i) => {
        const item = el("li", { class: i === 0 ? "selected" : "", tabindex: "0", "data-rank": String(i) },
          el("span", { class: "alt-text" }, a.text), el("span", { class: "alt-score" }, citationLine(a)));
        const pick = () => showPassage(i, pred.no_answer);
        item.addEventListener("click", pick);
        item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
        list.append(item);
      });
      result.append(el("h3", {}, "Top answers (click to show in its passage)"), list);
    }
    showPassage(0, pred.no_answer);
    result.dataset.state = "done";
  }

  /** Answer i in its passage: source and page above, the answer marked at its exact offsets. */
  function showPassage(i, noAnswer) {
    const { el, sliceCodePoints } = window.spanqa;
    const a = docs.answers[i];
    document.querySelectorAll("#alternatives li").forEach((li, j) => li.classList.toggle("selected", i === j));
    const passage = a.passage_text;
    const start = a.start - a.passage_start;
    const end = a.end - a.passage_start;
    const n = chars(passage);
    const mark = el("mark", { id: "answer-mark", class: noAnswer || i > 0 ? "guess" : "" }, sliceCodePoints(passage, start, end));
    const where = el("p", { class: "cite", id: "cited-page" },
      el("strong", {}, a.doc), a.page ? ` · page ${a.page}` : "", el("span", { class: "offsets" }, ` characters ${a.passage_start}–${a.passage_end}`));
    $("index-view").replaceChildren(where,
      el("div", { class: "passage", id: "passage" }, sliceCodePoints(passage, 0, start), mark, sliceCodePoints(passage, end, n)));
    mark.scrollIntoView({ block: "center", behavior: "smooth" });
  }

  // ---- wiring ----------------------------------------------------------------------------------------

  /** Runs before app.js's submit handler: asks the index in index mode, and refuses a text over the
   * server's limit in characters (instead of the body-size error the server would give in bytes). */
  function beforeAsk(event) {
    if (docs.indexMode) {
      event.preventDefault();
      event.stopImmediatePropagation();
      askIndex();
      return;
    }
    const text = window.spanqa.currentText();
    const limit = docs.limits && docs.limits.max_context_chars;
    if (limit && chars(text) > limit) {
      event.preventDefault();
      event.stopImmediatePropagation();
      window.spanqa.showError(`The text has ${fmt(chars(text))} characters; this server reads at most ${fmt(limit)}.`);
    }
  }

  function init() {
    $("ask-form").addEventListener("submit", beforeAsk, true); // capture: before app.js's handler
    $("file").addEventListener("change", async (e) => {
      const file = e.target.files[0];
      e.target.value = "";
      if (file) await upload(file);
    });
    $("mode-text").addEventListener("change", () => setIndexMode(false));
    $("mode-index").addEventListener("change", () => setIndexMode(true));
    $("context").addEventListener("input", () => showSource());
    $("sample").addEventListener("click", () => showSource());
    window.spanqa.onHighlight = onHighlight;
    loadLimits();
    loadIndex();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
