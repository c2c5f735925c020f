/** The trace page's stylesheet (see trace-page.ts). */
export const TRACE_PAGE_STYLE = `
  body { font: 15px/1.5 system-ui, sans-serif; margin: 1.5rem auto; max-width: 80rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
  textarea { width: 100%; font: inherit; box-sizing: border-box; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: .5rem 0; padding: .25rem .75rem .5rem; }
  legend { font-size: 13px; color: #555; }
  .controls { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; }
  .controls input[type=number] { width: 5rem; }
  #weights label { white-space: nowrap; }
  .buttons { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0; }
  #download[aria-disabled=true] { color: #999; pointer-events: none; }
  #status { color: #555; margin: .25rem 0; }
  #status.error { color: #b00020; }
  .key { font-size: 13px; color: #444; margin: .25rem 0; }
  .key .scale { display: inline-block; width: 8rem; height: .8rem; vertical-align: middle; border-radius: 3px;
                background: linear-gradient(to right, hsl(0,65%,82%), hsl(60,65%,82%), hsl(120,65%,82%)); }
  .key .alone { background: #e4e4e4; padding: 0 .4rem; border-radius: 3px; }
  #columns { display: flex; gap: .75rem; align-items: stretch; }
  .column { flex: 1 1 0; min-width: 0; display: flex; flex-direction: column; }
  .column.ensemble { flex-grow: 2; }
  .column h2 { font-size: 14px; margin: 0 0 .25rem; }
  .column .note { font-size: 12px; color: #555; min-height: 1.2em; }
  .column .note.error { color: #b00020; }
  .text { white-space: pre-wrap; overflow-wrap: anywhere; border: 1px solid #ccc; border-radius: 6px; padding: .75rem; min-height: 6rem; flex: 1; }
  #output span.token { border-radius: 3px; cursor: default; }
  #output span.token:hover { outline: 2px solid #333; }
  /* Whitespace pieces: wide enough to hover, with a faint marker. */
  #output span.space { display: inline-block; min-width: .8em; position: relative; }
  #output span.space::after { content: "\\00b7"; position: absolute; left: 50%; transform: translateX(-50%); color: rgba(0,0,0,.35); }
  #output span.newline::before { content: "\\21b5"; color: rgba(0,0,0,.35); padding: 0 .15em; }
  #tip { position: fixed; display: none; box-sizing: border-box; background: #fff; border: 1px solid #888; border-radius: 6px;
         padding: .5rem .75rem; box-shadow: 0 4px 16px rgba(0,0,0,.2); font-size: 13px; z-index: 10; pointer-events: none;
         max-width: min(36rem, calc(100vw - 16px)); max-height: calc(100vh - 16px); overflow: auto; }
  #tip table { border-collapse: collapse; width: 100%; margin-top: .25rem; }
  #tip td { padding: .1rem .4rem; vertical-align: top; border-top: 1px solid #eee; }
  #tip td.name { white-space: nowrap; }
  #tip td.mass { white-space: nowrap; text-align: right; font-variant-numeric: tabular-nums; }
  #tip .cand { display: inline-block; margin: 0 .5rem 0 0; overflow-wrap: anywhere; }
  #tip .win { font-weight: bold; color: #0a6b2d; }
`;
