// The spanqa page: sends the text and question to POST /v1/answer and underlines the answer in place.
// Two probabilities are shown: how likely the text answers the question (`answerable`, for the prior set
// with the slider) and how likely the span is right if it does (`score`). Moving the slider re-decides the
// last answer here, without a new request: Bayes' rule shifts `answerable`'s log-odds from the prior the
// server used to the new one (see docs/evaluation.md).
// The server's offsets count Unicode code points (Python str indexes); JavaScript strings index UTF-16
// code units, where an emoji or any character outside the BMP takes two. Offsets are converted before
// slicing, or every answer after an emoji would be shifted.
"use strict";

const SAMPLE = `The Old Point lighthouse stands on a granite headland at the mouth of the harbour. \
Construction began in 1846 under the engineer Margaret Hale, who chose the site after two ships were \
wrecked on the reef below in a single winter. The tower is 38 metres tall and was built from stone \
quarried on the island itself.

The lighthouse was first lit on 12 March 1849, using a lamp that burned whale oil. In 1902 the oil lamp \
was replaced by a paraffin burner, and in 1957 the light was converted to electricity. Its beam can be \
seen from 40 kilometres away on a clear night.`;

/** UTF-16 index of the code point at `offset` (a Python str index) in `text`. */
function codePointToUtf16(text, offset) {
  let unit = 0;
  for (let n = 0; n < offset && unit < text.length; n++) {
    const c = text.charCodeAt(unit);
    const pair = c >= 0xd800 && c <= 0xdbff && unit + 1 < text.length;
    unit += pair ? 2 : 1;
  }
  return unit;
}

/** The slice of `text` between two code-point offsets. */
function sliceCodePoints(text, start, end) {
  return text.slice(codePointToUtf16(text, start), codePointToUtf16(text, end));
}

const $ = (id) => document.getElementById(id);

const state = { text: "", prediction: null, selected: 0, prior: null };

const logit = (p) => Math.log(p / (1 - p));
const sigmoid = (z) => 1 / (1 + Math.exp(-z));
const clamp = (p) => Math.min(1 - 1e-9, Math.max(1e-9, p));

/** `answerable` moved from the prior it was computed at to `prior`; null if the response cannot tell. */
function answerableAt(pred, prior) {
  if (typeof pred.answerable !== "number" || typeof pred.answerable_prior !== "number" || prior == null) {
    return typeof pred.answerable === "number" ? pred.answerable : null;
  }
  if (pred.answerable <= 0 || pred.answerable >= 1) return pred.answerable;
  return sigmoid(logit(clamp(pred.answerable)) + logit(clamp(prior)) - logit(clamp(pred.answerable_prior)));
}

/** The prediction as the current slider decides it: no answer when answerable < 0.5 at that prior. */
function decidedAt(pred, prior) {
  const answerable = answerableAt(pred, prior);
  if (answerable == null || typeof pred.answerable_prior !== "number") return { ...pred, answerable };
  return { ...pred, answerable, no_answer: !pred.answers.length || answerable < 0.5 };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** Show `text` read-only with the answer at code-point offsets [start, end) marked. */
function showHighlighted(text, start, end, guess) {
  const view = $("view");
  const a = codePointToUtf16(text, start);
  const b = codePointToUtf16(text, end);
  const mark = el("mark", { id: "answer-mark", class: guess ? "guess" : "" }, text.slice(a, b));
  view.replaceChildren(text.slice(0, a), mark, text.slice(b));
  editing(false);
  mark.scrollIntoView({ block: "center", behavior: "smooth" });
  window.spanqa.onHighlight?.(start, end); // documents.js: the page of an uploaded PDF
}

function editing(on) {
  $("context").hidden = !on;
  $("view").hidden = on;
  $("edit").hidden = on;
  if (on) $("context").focus();
}

function scoreBar(score) {
  const pct = Math.round(Math.max(0, Math.min(1, score)) * 100);
  return el("span", { class: "bar", title: `${score.toFixed(3)}` }, el("span", { style: `width:${pct}%` }));
}

const percent = (p) => `${Math.round(p * 100)}%`;

function renderResult(response) {
  state.prediction = response;
  state.selected = 0;
  render();
}

/** Draw state.prediction as the slider's prior decides it. */
function render() {
  const result = $("result");
  result.replaceChildren();
  const pred = decidedAt(state.prediction, state.prior);
  const best = pred.answers[0];
  if (pred.no_answer) {
    result.append(
      el("div", { class: "no-answer", id: "no-answer" },
        el("strong", {}, best ? "Probably not in the text." : "No answer in this text."),
        el("span", {}, best ? " The best guess is marked with a dashed line; the model thinks the text probably does not answer the question." : "")),
    );
  }
  if (best) {
    const main = el("div", { class: pred.no_answer ? "best guess" : "best", id: "best" },
      el("q", { id: "answer-text" }, best.text),
      el("div", { class: "meta", id: "span-score" }, scoreBar(best.score), ` ${percent(best.score)} likely the right span, if the text answers the question`,
        el("span", { class: "offsets" }, `[${best.start}:${best.end}]`)));
    result.append(main);
  }
  if (typeof pred.answerable === "number") {
    const prior = typeof pred.answerable_prior === "number" ? ` (prior ${percent(state.prior ?? pred.answerable_prior)})` : "";
    result.append(el("div", { class: "meta answerable", id: "answerable" }, scoreBar(pred.answerable),
      ` ${percent(pred.answerable)} likely that the text answers the question${prior}`));
  }
  if (pred.answers.length > 1) {
    const list = el("ol", { class: "alternatives", id: "alternatives" });
    pred.answers.forEach((a, i) => {
      const item = el("li", { class: i === state.selected ? "selected" : "", tabindex: "0", "data-rank": String(i) },
        el("span", { class: "alt-text" }, a.text), el("span", { class: "alt-score" }, scoreBar(a.score), ` ${percent(a.score)}`));
      const pick = () => select(i);
      item.addEventListener("click", pick);
      item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      list.append(item);
    });
    result.append(el("h3", {}, "Top answers (click to show in the text)"), list);
  }
  const diff = pred.null_score_diff == null ? "n/a" : pred.null_score_diff.toFixed(2);
  result.append(el("p", { class: "fineprint" }, `null_score_diff ${diff}`));
  const shown = pred.answers[state.selected] || best;
  if (shown) showHighlighted(state.text, shown.start, shown.end, pred.no_answer || state.selected > 0);
  else clearHighlight();
  result.dataset.state = "done";
}

function select(i) {
  const a = state.prediction.answers[i];
  state.selected = i;
  document.querySelectorAll("#alternatives li").forEach((li, j) => li.classList.toggle("selected", i === j));
  showHighlighted(state.text, a.start, a.end, decidedAt(state.prediction, state.prior).no_answer || i > 0);
}

/** The text without any mark: an old answer must not stay highlighted once it is no longer shown. */
function clearHighlight() {
  $("view").replaceChildren(state.text);
}

function showError(message) {
  state.prediction = null;
  clearHighlight();
  const result = $("result");
  result.replaceChildren(el("div", { class: "error", id: "error" }, message));
  result.dataset.state = "error";
}

function setPrior(prior) {
  state.prior = prior;
  $("prior").value = String(Math.round(prior * 100));
  $("prior-value").textContent = percent(prior);
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value;
  const text = $("context").hidden ? state.text : $("context").value;
  if (!text.trim()) return showError("Paste or upload a text first.");
  if (!question.trim()) return showError("Type a question.");
  state.text = text;
  state.prediction = null;
  clearHighlight();
  const result = $("result");
  result.dataset.state = "loading";
  result.replaceChildren(el("p", { class: "hint" }, "Reading…"));
  $("ask").disabled = true;
  try {
    const response = await fetch("/v1/answer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, context: text, top_k: Number($("top-k").value),
        ...(state.prior != null ? { answerable_prior: state.prior } : {}) }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const wait = response.headers.get("Retry-After");
      showError((body.message || `the server answered ${response.status}`) + (wait ? ` (retry in ${wait} s)` : ""));
      return;
    }
    renderResult(body);
  } catch (err) {
    showError(`Cannot reach the server: ${err.message}`);
  } finally {
    $("ask").disabled = false;
  }
}

function setText(text) {
  $("context").value = text;
  state.text = $("context").value; // the textarea normalises line ends; offsets index what it holds
  editing(true);
  updateCount();
}

function updateCount() {
  const text = $("context").hidden ? state.text : $("context").value;
  $("count").textContent = text ? `${[...text].length.toLocaleString()} characters` : "";
}

async function loadModelInfo() {
  try {
    const info = await (await fetch("/v1/model")).json();
    const calib = info.calibrated ? "calibrated probabilities" : "uncalibrated scores";
    $("model-info").textContent = `${info.name} · ${info.backend} · ${calib}`;
    if (typeof info.answerable_prior === "number" && state.prior == null) setPrior(info.answerable_prior);
  } catch {
    $("model-info").textContent = "";
  }
}

function init() {
  $("ask-form").addEventListener("submit", ask);
  $("sample").addEventListener("click", () => {
    setText(SAMPLE);
    if (!$("question").value) $("question").value = "When was the lighthouse first lit?";
  });
  $("edit").addEventListener("click", () => editing(true));
  $("prior").addEventListener("input", () => {
    setPrior(Number($("prior").value) / 100);
    if (state.prediction) render(); // the last answer, re-decided here: no new request
  });
  $("context").addEventListener("input", updateCount);
  loadModelInfo(); // uploads are read by documents.js
}

const currentText = () => ($("context").hidden ? state.text : $("context").value);

// documents.js (uploads, index mode) builds on these
window.spanqa = {
  codePointToUtf16, sliceCodePoints, showHighlighted, setText, showError, el, editing, currentText, answerableAt,
};
document.addEventListener("DOMContentLoaded", init);
