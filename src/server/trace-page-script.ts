/**
 * The trace page's script (see trace-page.ts): plain browser JavaScript in a string, so no
 * backticks or dollar-braces inside, and backslashes doubled.
 */
export const TRACE_PAGE_SCRIPT = `
const $ = (id) => document.getElementById(id);
const output = $("output"), status = $("status"), tip = $("tip");
$("apiKey").value = localStorage.getItem("chorus-api-key") || "";
let controller = null;
/** Model cards from /v1/models, by id. */
const cards = new Map();
/** What the download link holds: the last run's settings, streamed steps and result, and the members alone. */
let record = null;
let downloadUrl = null;

function headers() {
  const key = $("apiKey").value.trim();
  localStorage.setItem("chorus-api-key", key);
  return key ? { "content-type": "application/json", authorization: "Bearer " + key } : { "content-type": "application/json" };
}

function setStatus(text, error) { status.textContent = text; status.className = error ? "error" : ""; }

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  const body = await response.json();
  if (!response.ok) return setStatus(body.error ? body.error.message : "cannot list models", true);
  cards.clear();
  $("model").replaceChildren(...body.data.map((m) => {
    cards.set(m.id, m);
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.id + " (" + (m.members || []).join(" + ") + ")";
    return option;
  }));
  showDefaults();
  setStatus("ready");
}

/** Starts the controls at the selected model's defaults: its method, one weight per member, its gate. */
function showDefaults() {
  const card = cards.get($("model").value);
  if (!card) return;
  const defaults = card.ensemble || {};
  if (defaults.method) $("method").value = defaults.method;
  $("weights").replaceChildren(...(card.members || []).map((name, i) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "number"; input.min = "0"; input.step = "any"; input.className = "weight"; input.dataset.member = name;
    input.value = String(defaults.weights ? defaults.weights[i] : 1);
    label.append(name + " ", input);
    return label;
  }));
  $("gate").checked = Boolean(defaults.gate);
  if (defaults.gate) $("threshold").value = String(defaults.gate.threshold);
  $("gate").disabled = !defaults.primary;
  $("gate").title = defaults.primary ? "the primary (" + defaults.primary + ") decides alone when its top probability is above the threshold" : "this model has no primary member to gate on";
}

/** A number field: left out when empty (the config's value applies); anything else goes to the server as typed, which says what is wrong with it. */
function numberField(id) {
  const text = $(id).value.trim();
  return text === "" ? undefined : Number(text);
}

/** The request body the controls describe (the \`ensemble\` object as the API takes it). */
function requestBody(chat, prompt, only) {
  const ensemble = { method: $("method").value };
  if (only === undefined) {
    ensemble.trace = true;
    // An empty weight goes as null: the server refuses it by name.
    ensemble.weights = [...document.querySelectorAll("#weights input.weight")].map((w) => (w.value.trim() === "" ? null : Number(w.value)));
    if (!$("gate").disabled) ensemble.gate = $("gate").checked ? { threshold: numberField("threshold") ?? null } : null;
  } else {
    ensemble.only = only;
  }
  const body = { model: $("model").value, stream: true, ensemble };
  const maxTokens = numberField("maxTokens"), temperature = numberField("temperature"), seed = numberField("seed");
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  if (temperature !== undefined) body.temperature = temperature;
  if (seed !== undefined) body.seed = seed;
  if (chat) body.messages = [{ role: "user", content: prompt }]; else body.prompt = prompt;
  return body;
}

/**
 * Posts one streamed request and reads its server-sent events: onStep for each traced step,
 * onText for text that came without a step. Resolves with the finish reason and the summary;
 * throws the server's message on a refusal or an error event.
 */
async function stream(chat, body, signal, onStep, onText) {
  const response = await fetch(chat ? "/v1/chat/completions" : "/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) {
    const e = await response.json().catch(() => null);
    throw new Error(e && e.error ? e.error.message : response.status + " " + response.statusText);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", finish = null, summary = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let at;
    while ((at = buffer.indexOf("\\n\\n")) >= 0) {
      const event = buffer.slice(0, at); buffer = buffer.slice(at + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      const text = choice ? (chat ? (choice.delta && choice.delta.content) || "" : choice.text) : "";
      if (chunk.ensemble && chunk.ensemble.step) onStep(chunk.ensemble.step);
      else if (text) onText(text);
      if (chunk.ensemble && chunk.ensemble.steps !== undefined) summary = chunk.ensemble;
      if (choice && choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { finish, summary };
}

/**
 * Agreement across vocabularies: the least mass any voting member put on the winning bytes
 * (the trace's winnerMass: its candidates that start with the winner or that the winner starts with).
 */
function agreement(trace) {
  if (trace.members.length === 0) return 1;
  return Math.min(...trace.members.map((m) => m.winnerMass ?? 0));
}

function addToken(step) {
  const span = document.createElement("span");
  span.className = "token";
  if (/^[ \\t]+$/.test(step.text)) span.classList.add("space");
  else if (/^\\s*\\n\\s*$/.test(step.text)) span.classList.add("newline");
  span.textContent = step.text;
  const share = agreement(step.trace);
  span.dataset.agreement = share.toFixed(2);
  span.dataset.ensembled = String(step.ensembled);
  span.style.background = step.ensembled ? "hsl(" + Math.round(120 * share) + ",65%,82%)" : "#e4e4e4";
  span.traceStep = step;
  output.appendChild(span);
}

function cell(text, className) { const td = document.createElement("td"); td.textContent = text; if (className) td.className = className; return td; }
function candidates(list, winner) {
  const td = cell("", "cands");
  for (const c of list) {
    const span = document.createElement("span");
    span.className = c.text === winner ? "cand win" : "cand";
    span.textContent = JSON.stringify(c.text) + " " + c.probability.toFixed(3);
    td.appendChild(span);
  }
  return td;
}

function showTip(span, event) {
  const step = span.traceStep, trace = step.trace;
  const title = document.createElement("div");
  title.innerHTML = "<b>step " + step.index + "</b>" + (step.ensembled ? "" : " (primary decided alone)") + " — winner: ";
  const win = document.createElement("span");
  win.className = "win";
  win.textContent = JSON.stringify(trace.winner.text) + " " + trace.winner.probability.toFixed(3);
  title.append(win, " · agreement " + span.dataset.agreement);
  const table = document.createElement("table");
  const head = document.createElement("tr");
  head.append(cell("member", "name"), cell("on winner", "mass"), cell("top candidates"));
  table.appendChild(head);
  for (const m of trace.members) {
    const row = document.createElement("tr");
    row.className = "member";
    row.append(cell(m.name + (m.healed ? " (healed)" : ""), "name"), cell((m.winnerMass ?? 0).toFixed(3), "mass"), candidates(m.top, trace.winner.text));
    table.appendChild(row);
  }
  const combined = document.createElement("tr");
  combined.append(cell("combined", "name"), cell(trace.winner.probability.toFixed(3), "mass"), candidates(trace.combined, trace.winner.text));
  table.appendChild(combined);
  tip.replaceChildren(title, table);
  tip.style.display = "block";
  placeTip(event.clientX, event.clientY);
}

/** Beside the pointer, flipped to the other side where it would leave the window, and never off it. */
function placeTip(x, y) {
  const margin = 8, w = tip.offsetWidth, h = tip.offsetHeight;
  let left = x + 12, top = y + 16;
  if (left + w > window.innerWidth - margin) left = x - 12 - w;
  if (top + h > window.innerHeight - margin) top = y - 16 - h;
  tip.style.left = Math.max(margin, Math.min(left, window.innerWidth - margin - w)) + "px";
  tip.style.top = Math.max(margin, Math.min(top, window.innerHeight - margin - h)) + "px";
}
output.addEventListener("mouseover", (e) => { if (e.target.classList.contains("token")) showTip(e.target, e); });
output.addEventListener("mouseout", (e) => { if (e.target.classList.contains("token")) tip.style.display = "none"; });

function busy(on) {
  $("go").disabled = on; $("compare").disabled = on; $("stop").disabled = !on;
  if (on) controller = new AbortController();
}

function offerDownload() {
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([JSON.stringify(record, null, 2)], { type: "application/json" }));
  const link = $("download");
  link.href = downloadUrl;
  link.setAttribute("aria-disabled", "false");
}

function failed(error) {
  return error.name === "AbortError" ? "stopped" : "error: " + error.message;
}

/** The settings a run used, above its column. */
function describe(body) {
  const e = body.ensemble, parts = [e.method];
  if (e.weights) parts.push("weights " + e.weights.join(", "));
  if (e.gate !== undefined) parts.push(e.gate ? "gate " + e.gate.threshold : "no gate");
  if (body.temperature !== undefined) parts.push("temperature " + body.temperature);
  if (body.seed !== undefined) parts.push("seed " + body.seed);
  return parts.join(" · ");
}

async function generate() {
  output.replaceChildren();
  busy(true);
  setStatus("generating…");
  const chat = $("chat").checked, prompt = $("prompt").value;
  const body = requestBody(chat, prompt);
  $("ensembleNote").textContent = describe(body);
  const steps = [];
  record = { created: new Date().toISOString(), endpoint: chat ? "/v1/chat/completions" : "/v1/completions", request: body, steps, result: null, alone: {} };
  let text = "";
  try {
    const { finish, summary } = await stream(chat, body, controller.signal, (step) => {
      steps.push(step);
      text += step.text;
      if (step.text) addToken(step);
    }, (piece) => { text += piece; output.appendChild(document.createTextNode(piece)); });
    record.result = { text, finish_reason: finish, ensemble: summary };
    setStatus("done: " + steps.length + " steps, finish reason " + finish);
  } catch (error) {
    record.result = { text, error: error.message };
    setStatus(failed(error), error.name !== "AbortError");
  } finally {
    busy(false);
    offerDownload();
  }
}

/** The same prompt and settings with \`ensemble.only\` for each member, one after another, each in its own column. */
async function compare() {
  const card = cards.get($("model").value);
  if (!card) return setStatus("error: choose a model first", true);
  for (const column of document.querySelectorAll(".column.alone")) column.remove();
  busy(true);
  const chat = $("chat").checked, prompt = $("prompt").value;
  if (!record) record = { created: new Date().toISOString(), endpoint: chat ? "/v1/chat/completions" : "/v1/completions", request: null, steps: [], result: null, alone: {} };
  record.alone = {};
  const columns = card.members.map((name) => {
    const column = document.createElement("div");
    column.className = "column alone";
    column.dataset.member = name;
    const heading = document.createElement("h2"), note = document.createElement("div"), text = document.createElement("div");
    heading.textContent = name + " alone";
    note.className = "note"; note.textContent = "waiting";
    text.className = "text";
    column.append(heading, note, text);
    $("columns").appendChild(column);
    return { name, note, text };
  });
  let failures = 0;
  try {
    for (const { name, note, text } of columns) {
      if (controller.signal.aborted) { note.textContent = "stopped"; continue; }
      const body = requestBody(chat, prompt, name);
      note.textContent = "generating…";
      let answer = "";
      try {
        const { finish } = await stream(chat, body, controller.signal, () => {}, (piece) => { answer += piece; text.textContent = answer; });
        note.textContent = "done, finish reason " + finish;
        record.alone[name] = { request: body, text: answer, finish_reason: finish };
      } catch (error) {
        failures++;
        note.textContent = failed(error);
        note.classList.toggle("error", error.name !== "AbortError");
        record.alone[name] = { request: body, text: answer, error: error.message };
      }
    }
    setStatus(failures ? "compared: " + failures + " of " + columns.length + " members failed" : "compared: " + columns.length + " members alone", failures > 0);
  } finally {
    busy(false);
    offerDownload();
  }
}

$("go").addEventListener("click", generate);
$("compare").addEventListener("click", compare);
$("stop").addEventListener("click", () => controller && controller.abort());
$("model").addEventListener("change", showDefaults);
$("apiKey").addEventListener("change", () => loadModels().catch((e) => setStatus("error: " + e.message, true)));
loadModels().catch((e) => setStatus("error: " + e.message, true));
`;
