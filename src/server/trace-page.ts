/**
 * The live trace page served at GET /: type a prompt, watch the answer stream from
 * /v1/completions (or chat) with `ensemble.trace`, each piece of text coloured by how many members
 * had the winner as their own first choice; hovering shows every member's top candidates.
 * One self-contained document (no build step, no external assets): the server must work offline.
 */
export const TRACE_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>chorus — live ensemble trace</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
  textarea { width: 100%; font: inherit; box-sizing: border-box; }
  .controls { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: .5rem 0 1rem; }
  .controls input[type=number] { width: 5rem; }
  #output { white-space: pre-wrap; border: 1px solid #ccc; border-radius: 6px; padding: .75rem; min-height: 6rem; }
  #output span.token { border-radius: 3px; cursor: default; }
  #output span.token:hover { outline: 2px solid #333; }
  #status { color: #555; }
  #status.error { color: #b00020; }
  #tip { position: fixed; display: none; background: #fff; border: 1px solid #888; border-radius: 6px; padding: .5rem .75rem;
         box-shadow: 0 4px 16px rgba(0,0,0,.2); font-size: 13px; max-width: 36rem; z-index: 10; pointer-events: none; }
  #tip table { border-collapse: collapse; }
  #tip td { padding: 0 .5rem; vertical-align: top; white-space: nowrap; }
  #tip .win { font-weight: bold; color: #0a6b2d; }
  .legend span { padding: 0 .4rem; border-radius: 3px; }
</style>
</head>
<body>
<h1>chorus live trace</h1>
<label for="prompt">Prompt</label>
<textarea id="prompt" rows="4">Once upon a time, there was a little</textarea>
<div class="controls">
  <label>Model <select id="model"></select></label>
  <label>Max tokens <input id="maxTokens" type="number" min="1" value="64"></label>
  <label><input id="chat" type="checkbox"> chat</label>
  <label>API key <input id="apiKey" type="password" size="12"></label>
  <button id="go">Generate</button>
  <button id="stop" disabled>Stop</button>
</div>
<div class="legend">Members agreeing with the winner:
  <span style="background:hsl(120,65%,82%)">all</span>
  <span style="background:hsl(60,65%,82%)">some</span>
  <span style="background:hsl(0,65%,82%)">none</span>
  <span style="background:#e4e4e4">primary decided alone</span>
</div>
<p id="status">ready</p>
<div id="output"></div>
<div id="tip"></div>
<script>
const $ = (id) => document.getElementById(id);
const output = $("output"), status = $("status"), tip = $("tip");
$("apiKey").value = localStorage.getItem("chorus-api-key") || "";
let controller = null;

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
  $("model").replaceChildren(...body.data.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.id + " (" + (m.members || []).join(" + ") + ")";
    return option;
  }));
  setStatus("ready");
}

/** Share of the voting members whose own first choice was the winner. */
function agreement(trace) {
  const members = trace.members;
  if (members.length === 0) return 1;
  return members.filter((m) => m.top.length > 0 && m.top[0].text === trace.winner.text).length / members.length;
}

function addToken(step) {
  const span = document.createElement("span");
  span.className = "token";
  span.textContent = step.text;
  const share = agreement(step.trace);
  span.dataset.agreement = share.toFixed(2);
  span.dataset.ensembled = String(step.ensembled);
  span.style.background = step.ensembled ? "hsl(" + Math.round(120 * share) + ",65%,82%)" : "#e4e4e4";
  span.traceStep = step;
  output.appendChild(span);
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
function candidate(c, winner) {
  const td = cell(JSON.stringify(c.text) + " " + c.probability.toFixed(3));
  if (c.text === winner) td.className = "win";
  return td;
}

function showTip(span, event) {
  const step = span.traceStep, trace = step.trace;
  const table = document.createElement("table");
  const title = document.createElement("div");
  title.innerHTML = "<b>step " + step.index + "</b>" + (step.ensembled ? "" : " (primary decided alone)") + " — winner: ";
  const win = document.createElement("span");
  win.className = "win";
  win.textContent = JSON.stringify(trace.winner.text) + " " + trace.winner.probability.toFixed(3);
  title.appendChild(win);
  for (const m of trace.members) {
    const row = document.createElement("tr");
    row.className = "member";
    row.appendChild(cell(m.name + (m.healed ? " (healed)" : "")));
    for (const c of m.top) row.appendChild(candidate(c, trace.winner.text));
    table.appendChild(row);
  }
  const combined = document.createElement("tr");
  combined.appendChild(cell("combined"));
  for (const c of trace.combined) combined.appendChild(candidate(c, trace.winner.text));
  table.appendChild(combined);
  tip.replaceChildren(title, table);
  tip.style.display = "block";
  tip.style.left = Math.min(event.clientX + 12, window.innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = (event.clientY + 16) + "px";
}
output.addEventListener("mouseover", (e) => { if (e.target.classList.contains("token")) showTip(e.target, e); });
output.addEventListener("mouseout", (e) => { if (e.target.classList.contains("token")) tip.style.display = "none"; });

async function generate() {
  output.replaceChildren();
  controller = new AbortController();
  $("go").disabled = true; $("stop").disabled = false;
  setStatus("generating…");
  const chat = $("chat").checked;
  const prompt = $("prompt").value;
  const body = { model: $("model").value, max_tokens: Number($("maxTokens").value), stream: true, ensemble: { trace: true } };
  if (chat) body.messages = [{ role: "user", content: prompt }]; else body.prompt = prompt;
  try {
    const response = await fetch(chat ? "/v1/chat/completions" : "/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) { const e = await response.json(); throw new Error(e.error ? e.error.message : response.statusText); }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", finish = null, steps = 0;
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
        if (chunk.ensemble && chunk.ensemble.step) { steps++; if (chunk.ensemble.step.text) addToken(chunk.ensemble.step); }
        else if (text) output.appendChild(document.createTextNode(text));
        if (choice && choice.finish_reason) finish = choice.finish_reason;
      }
    }
    setStatus("done: " + steps + " steps, finish reason " + finish);
  } catch (error) {
    setStatus(error.name === "AbortError" ? "stopped" : "error: " + error.message, error.name !== "AbortError");
  } finally {
    $("go").disabled = false; $("stop").disabled = true;
  }
}
$("go").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("apiKey").addEventListener("change", () => loadModels().catch((e) => setStatus("error: " + e.message, true)));
loadModels().catch((e) => setStatus("error: " + e.message, true));
</script>
</body>
</html>
`;
