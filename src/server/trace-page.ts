/**
 * The trace page served at GET /, a small playground: type a prompt, pick the method, weights,
 * gate, temperature and budget, and watch the answer stream from /v1/completions (or chat) with
 * `ensemble.trace`, each piece coloured by how much of every voting member's mass agreed with the
 * winning bytes; hovering shows every member's top candidates. One button runs each member alone
 * (`ensemble.only`) beside the ensemble; another downloads the run as JSON.
 * One self-contained document (no build step, no external assets): the server must work offline.
 */
import { IMPLEMENTED_METHODS } from "../config/schema.js";
import { TRACE_PAGE_SCRIPT } from "./trace-page-script.js";
import { TRACE_PAGE_STYLE } from "./trace-page-style.js";

const methodOptions = IMPLEMENTED_METHODS.map((m) => `<option value="${m}">${m}</option>`).join("");

export const TRACE_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chorus — live ensemble trace</title>
<style>${TRACE_PAGE_STYLE}</style>
</head>
<body>
<h1>chorus live trace</h1>
<label for="prompt">Prompt</label>
<textarea id="prompt" rows="3">Once upon a time, there was a little</textarea>
<fieldset class="controls">
  <legend>Request</legend>
  <label>Model <select id="model"></select></label>
  <label>Method <select id="method">${methodOptions}</select></label>
  <label>Max tokens <input id="maxTokens" type="number" min="1" value="64"></label>
  <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" placeholder="config"></label>
  <label>Seed <input id="seed" type="number" step="1" placeholder="random"></label>
  <label><input id="chat" type="checkbox"> chat</label>
  <label>API key <input id="apiKey" type="password" size="12"></label>
</fieldset>
<fieldset class="controls">
  <legend>Ensemble</legend>
  <span id="weights" class="controls" title="one weight per member; 0 leaves a member out"></span>
  <label><input id="gate" type="checkbox"> gate above</label>
  <label><input id="threshold" type="number" min="0" max="1" step="0.05" value="0.6" aria-label="gate threshold"></label>
</fieldset>
<div class="buttons">
  <button id="go">Generate</button>
  <button id="compare">Compare with each member alone</button>
  <button id="stop" disabled>Stop</button>
  <a id="download" download="chorus-trace.json" aria-disabled="true">Download trace (JSON)</a>
</div>
<div class="key">Colour: agreement, the least mass any voting member put on the winning bytes
  (its candidates that start with the winner, or that the winner starts with; the trace's <code>winnerMass</code>):
  0 <span class="scale"></span> 1 · <span class="alone">primary decided alone</span></div>
<p id="status">ready</p>
<div id="columns">
  <div class="column ensemble"><h2>ensemble</h2><div id="ensembleNote" class="note"></div><div id="output" class="text"></div></div>
</div>
<div id="tip"></div>
<script>${TRACE_PAGE_SCRIPT}</script>
</body>
</html>
`;
