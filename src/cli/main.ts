#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { registerGenerate } from "./generate.js";
import { registerServe } from "./serve.js";
import { registerEval } from "./eval.js";
import { registerBench } from "./bench.js";
import { registerAlign } from "./align.js";
import { registerInit } from "./init.js";

const program = new Command()
  .name("chorus")
  .description("token-level ensembles of GGUF language models, even with different vocabularies")
  .version("0.1.0")
  .showHelpAfterError()
  .exitOverride();

// A reader that stops early (`chorus generate … | head`) closes the pipe: that ends the output, not in a crash.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  process.exit(0);
});

registerGenerate(program);
registerServe(program);
registerEval(program);
registerBench(program);
registerAlign(program);
registerInit(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode;
  } else {
    // Every line of a many-problem message gets the prefix, so each reads on its own.
    process.stderr.write((error as Error).message.split("\n").map((line) => `chorus: ${line}\n`).join(""));
    process.exitCode = 1;
  }
}
