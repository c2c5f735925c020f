/**
 * Model references people use besides file paths, resolved to a GGUF file already on this machine:
 * an Ollama name (`llama3.2:1b`, `library/qwen3:0.6b`) in Ollama's local store, a Hugging Face repo
 * (`user/repo`, `hf:user/repo:Q4_K_M`, `hf:user/repo/file.gguf`, a huggingface.co URL) in the
 * Hugging Face cache or node-llama-cpp's models folder, and any `https://…gguf` URL in
 * node-llama-cpp's models folder. Nothing is downloaded: when the file is not there, the problem
 * says where chorus looked and which command downloads it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export type ModelReference =
  | { readonly kind: "ollama"; readonly text: string; readonly host: string; readonly repository: string; readonly tag: string }
  | { readonly kind: "hf"; readonly text: string; readonly repo: string; readonly file?: string; readonly quant?: string; readonly branch?: string }
  | { readonly kind: "url"; readonly text: string; readonly url: URL };

export type ReferenceResolution = { readonly path: string } | { readonly problem: string };

const OLLAMA_HOST = "registry.ollama.ai";
const OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model";
/** node-llama-cpp's quantization when an `hf:` URI names none. */
const DEFAULT_HF_QUANT = "Q4_K_M";
const HF_PREFIXES = ["hf://", "huggingface://", "hf:", "huggingface:", "hf.co/", "huggingface.co/"];
const NAME_PART = "[A-Za-z0-9][A-Za-z0-9._-]*";
const OLLAMA_NAME = new RegExp(`^(?:(${NAME_PART}\\.[A-Za-z]{2,}(?::\\d+)?)/)?(?:(${NAME_PART})/)?(${NAME_PART})(?::([A-Za-z0-9][A-Za-z0-9._-]*))?$`);
const HF_REPO = new RegExp(`^(${NAME_PART})/(${NAME_PART})$`);

/**
 * What a model string names when it is not a file path: `explicit` references (`hf:`, `ollama:`,
 * URLs) are never paths; the others (`llama3.2:1b`, `user/repo`, a bare name) are tried as a
 * path first and only then as a reference. A `user/repo` string is both an Ollama name and a
 * Hugging Face repo id, so it yields both.
 */
export function parseModelReference(text: string): { explicit: boolean; references: ModelReference[] } {
  if (/^https?:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return { explicit: true, references: [] };
    }
    const hf = huggingFaceUrl(url, text);
    return { explicit: true, references: [hf ?? { kind: "url", text, url }] };
  }
  const hfPrefix = HF_PREFIXES.find((p) => text.toLowerCase().startsWith(p));
  if (hfPrefix !== undefined) {
    const hf = huggingFaceUri(text.slice(hfPrefix.length), text);
    // Ollama pulls `hf.co/user/repo:quant` into its own store under that name.
    const ollama = hfPrefix.endsWith(".co/") ? ollamaName(`hf.co/${text.slice(hfPrefix.length)}`, text) : undefined;
    return { explicit: true, references: [...(hf ? [hf] : []), ...(ollama ? [ollama] : [])] };
  }
  if (text.toLowerCase().startsWith("ollama:")) {
    const ollama = ollamaName(text.slice("ollama:".length), text);
    return { explicit: true, references: ollama ? [ollama] : [] };
  }
  if (/\.gguf$/i.test(text) || /^[.~/\\]/.test(text) || text.includes("\\")) return { explicit: false, references: [] };
  const references: ModelReference[] = [];
  const ollama = ollamaName(text, text);
  if (ollama) references.push(ollama);
  const repo = HF_REPO.exec(text);
  if (repo && repo[1] !== "library") references.push({ kind: "hf", text, repo: text });
  return { explicit: false, references };
}

function ollamaName(name: string, text: string): ModelReference | undefined {
  const match = OLLAMA_NAME.exec(name);
  if (!match) return undefined;
  const [, host, namespace, model, tag] = match;
  return { kind: "ollama", text, host: host ?? OLLAMA_HOST, repository: `${namespace ?? "library"}/${model}`, tag: tag ?? "latest" };
}

function huggingFaceUri(rest: string, text: string): ModelReference | undefined {
  const [user, repoAndQuant, ...fileParts] = rest.split("/");
  if (!user || !repoAndQuant) return undefined;
  if (fileParts.length > 0) {
    const [filePath, branch] = fileParts.join("/").split("#");
    return filePath ? { kind: "hf", text, repo: `${user}/${repoAndQuant}`, file: filePath, branch: branch || undefined } : undefined;
  }
  const [repo, quant] = repoAndQuant.split(":");
  if (!repo) return undefined;
  return { kind: "hf", text, repo: `${user}/${repo}`, quant: quant || undefined };
}

function huggingFaceUrl(url: URL, text: string): ModelReference | undefined {
  if (!/^(www\.)?(huggingface\.co|hf\.co)$/i.test(url.hostname)) return undefined;
  const [, user, repo, resolve, branch, ...file] = url.pathname.split("/").map(decodeURIComponent);
  if (!user || !repo) return undefined;
  if ((resolve === "resolve" || resolve === "blob") && branch && file.length > 0) {
    return { kind: "hf", text, repo: `${user}/${repo}`, file: file.join("/"), branch: branch === "main" ? undefined : branch };
  }
  return resolve === undefined ? { kind: "hf", text, repo: `${user}/${repo}` } : undefined;
}

/** Where the local stores are, from the environment (tests point them at temporary folders). */
export interface StoreLocations {
  readonly ollama: string;
  readonly huggingFace: string;
  readonly nodeLlamaCpp: string;
}

export function storeLocations(env: NodeJS.ProcessEnv = process.env): StoreLocations {
  const home = env.HOME || os.homedir();
  const hfHome = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(home, ".cache"), "huggingface");
  return {
    ollama: env.OLLAMA_MODELS || path.join(home, ".ollama", "models"),
    huggingFace: env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || path.join(hfHome, "hub"),
    nodeLlamaCpp: path.join(home, ".node-llama-cpp", "models"),
  };
}

/** `~/x` for messages and commands, when the path is under the home folder. */
function tilde(p: string, env: NodeJS.ProcessEnv): string {
  const home = env.HOME || os.homedir();
  return p === home || p.startsWith(home + path.sep) ? `~${p.slice(home.length)}` : p;
}

interface Lookup {
  readonly path?: string;
  /** A reason the reference cannot be used although something was found (a broken store entry, several candidates). */
  readonly problem?: string;
  /** Where it looked, for the message when nothing was found. */
  readonly looked: string;
  /** The command that downloads it. */
  readonly download: string;
}

/**
 * Finds the GGUF file that `text` names in the local stores, trying its references in order.
 * `alsoLooked` names places already searched (the paths tried), for the message.
 */
export async function resolveModelReferences(
  text: string,
  references: readonly ModelReference[],
  env: NodeJS.ProcessEnv = process.env,
  alsoLooked: readonly string[] = [],
): Promise<ReferenceResolution> {
  const stores = storeLocations(env);
  const lookups: Lookup[] = [];
  for (const reference of references) lookups.push(...(await lookUp(reference, stores, env)));
  const found = lookups.find((l) => l.path !== undefined || l.problem !== undefined);
  if (found?.path !== undefined) return { path: found.path };
  if (found?.problem !== undefined) return { problem: found.problem };
  if (lookups.length === 0) return { problem: `"${text}" is neither a file nor a model reference chorus understands — give the path of a .gguf file, an Ollama name (llama3.2:1b), or hf:user/repo[:quant]` };
  const looked = [...alsoLooked, ...lookups.map((l) => l.looked)];
  const downloads = [...new Set(lookups.map((l) => `\`${l.download}\``))];
  return { problem: `"${text}" is not on this machine (looked in ${looked.join("; ")}) — download it with ${downloads.join(" or ")}, or give the path of a .gguf file` };
}

/** Every lookup a reference needs, in order of preference. */
export async function lookUp(reference: ModelReference, stores: StoreLocations, env: NodeJS.ProcessEnv): Promise<Lookup[]> {
  switch (reference.kind) {
    case "ollama":
      return [lookUpOllama(reference, stores.ollama, env)];
    case "hf":
      return [lookUpHuggingFaceCache(reference, stores.huggingFace, env), await lookUpNodeLlamaCpp(reference, stores.nodeLlamaCpp, env)];
    case "url":
      return [await lookUpNodeLlamaCpp(reference, stores.nodeLlamaCpp, env)];
  }
}

function lookUpOllama(reference: Extract<ModelReference, { kind: "ollama" }>, store: string, env: NodeJS.ProcessEnv): Lookup {
  const manifest = path.join(store, "manifests", reference.host, ...reference.repository.split("/"), reference.tag);
  const name = `${reference.host === OLLAMA_HOST ? "" : `${reference.host}/`}${reference.repository.replace(/^library\//, "")}:${reference.tag}`;
  const base = { looked: `Ollama's store ${tilde(manifest, env)}`, download: `ollama pull ${name}` };
  if (!existsSync(manifest)) return base;
  let layers: { mediaType?: unknown; digest?: unknown }[];
  try {
    layers = (JSON.parse(readFileSync(manifest, "utf8")) as { layers?: typeof layers }).layers ?? [];
  } catch (error) {
    return { ...base, problem: `Ollama's manifest ${manifest} cannot be read (${(error as Error).message}) — pull the model again: \`${base.download}\`` };
  }
  const layer = layers.find((l) => l.mediaType === OLLAMA_MODEL_LAYER);
  if (!layer || typeof layer.digest !== "string") {
    return { ...base, problem: `Ollama's manifest for ${name} (${manifest}) lists no GGUF model layer (${OLLAMA_MODEL_LAYER}) — is it a cloud-only model? Pick one Ollama runs locally` };
  }
  const blob = path.join(store, "blobs", layer.digest.replace(":", "-"));
  if (!existsSync(blob)) return { ...base, problem: `Ollama's model blob ${blob} is missing although ${manifest} lists it — pull the model again: \`${base.download}\`` };
  return { ...base, path: blob };
}

function lookUpHuggingFaceCache(reference: Extract<ModelReference, { kind: "hf" }>, hub: string, env: NodeJS.ProcessEnv): Lookup {
  const repoDir = path.join(hub, `models--${reference.repo.replace(/\//g, "--")}`);
  const download = reference.file
    ? `huggingface-cli download ${reference.repo} ${reference.file}${reference.branch ? ` --revision ${reference.branch}` : ""}`
    : `huggingface-cli download ${reference.repo} --include "*${reference.quant ?? DEFAULT_HF_QUANT}*.gguf"`;
  const base = { looked: `the Hugging Face cache ${tilde(repoDir, env)}`, download };
  const snapshots = snapshotDirs(repoDir, reference.branch ?? "main");
  if (reference.file) {
    for (const snapshot of snapshots) {
      const file = path.join(snapshot, reference.file);
      if (existsSync(file)) return { ...base, path: file };
    }
    return base;
  }
  const files = [...new Set(snapshots.flatMap((s) => ggufFiles(s).map((f) => path.relative(s, f))))].sort();
  if (files.length === 0) return base;
  const chosen = chooseGguf(files, reference.quant);
  if ("problem" in chosen) return { ...base, problem: `${reference.text}: ${chosen.problem}` };
  const snapshot = snapshots.find((s) => existsSync(path.join(s, chosen.file)))!;
  return { ...base, path: path.join(snapshot, chosen.file) };
}

/** The snapshot the branch's ref points at first, then every other one. */
function snapshotDirs(repoDir: string, branch: string): string[] {
  const root = path.join(repoDir, "snapshots");
  let all: string[];
  try {
    all = readdirSync(root).map((d) => path.join(root, d));
  } catch {
    return [];
  }
  let preferred: string | undefined;
  try {
    preferred = path.join(root, readFileSync(path.join(repoDir, "refs", branch), "utf8").trim());
  } catch {
    preferred = undefined;
  }
  return preferred && all.includes(preferred) ? [preferred, ...all.filter((d) => d !== preferred)] : all;
}

function ggufFiles(dir: string, depth = 0): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const full = path.join(dir, name);
    let isDirectory = false;
    try {
      isDirectory = statSync(full).isDirectory();
    } catch {
      return [];
    }
    if (isDirectory) return depth < 3 ? ggufFiles(full, depth + 1) : [];
    return /\.gguf$/i.test(name) ? [full] : [];
  });
}

/**
 * The GGUF a repo reference means among the repo's files: the one whose name carries the
 * quantization (node-llama-cpp's Q4_K_M when none is named); the first part of a split model.
 */
export function chooseGguf(files: readonly string[], quant: string | undefined): { file: string } | { problem: string } {
  const firstParts = files.filter((f) => !/-\d{5}-of-\d{5}\.gguf$/i.test(f) || /-00001-of-\d{5}\.gguf$/i.test(f));
  const models = firstParts.filter((f) => !/mmproj/i.test(path.basename(f)));
  const wanted = (quant ?? DEFAULT_HF_QUANT).toLowerCase();
  const matching = models.filter((f) => path.basename(f).toLowerCase().includes(wanted));
  if (matching.length === 1) return { file: matching[0]! };
  if (quant === undefined && matching.length === 0 && models.length === 1) return { file: models[0]! };
  const list = (matching.length > 1 ? matching : models).join(", ");
  if (matching.length > 1) return { problem: `several GGUF files match "${quant ?? DEFAULT_HF_QUANT}" (${list}) — name one: hf:user/repo/FILE.gguf` };
  return { problem: `no GGUF file matches "${quant ?? DEFAULT_HF_QUANT}" among ${list || "no GGUF files"} — name one with hf:user/repo:QUANT or hf:user/repo/FILE.gguf` };
}

async function lookUpNodeLlamaCpp(reference: Exclude<ModelReference, { kind: "ollama" }>, dir: string, env: NodeJS.ProcessEnv): Promise<Lookup> {
  const uri = reference.kind === "url" ? reference.text : hfUri(reference);
  const base = { looked: `node-llama-cpp's models folder ${tilde(dir, env)}`, download: `npx node-llama-cpp pull --dir ${tilde(dir, env)} ${uri}` };
  if (!existsSync(dir)) return base;
  if (reference.kind === "url" && !huggingFaceUrl(reference.url, reference.text)) {
    // node-llama-cpp saves a plain URL's file under its own name.
    const file = path.join(dir, path.basename(decodeURIComponent(reference.url.pathname)));
    return existsSync(file) ? { ...base, path: file } : base;
  }
  // node-llama-cpp names what it pulls from Hugging Face in its own way; ask it, never downloading.
  const { resolveModelFile } = await import("node-llama-cpp");
  try {
    return { ...base, path: await resolveModelFile(uri, { directory: dir, download: false, cli: false }) };
  } catch {
    return base;
  }
}

function hfUri(reference: Extract<ModelReference, { kind: "hf" }>): string {
  if (reference.file) return `hf:${reference.repo}/${reference.file}${reference.branch ? `#${reference.branch}` : ""}`;
  return `hf:${reference.repo}:${reference.quant ?? DEFAULT_HF_QUANT}`;
}

/**
 * A member name from a model reference or path: the file name without `.gguf`, an Ollama
 * `name:tag` as `name-tag`, a Hugging Face repo without its `-GGUF` suffix (plus the quantization).
 */
export function memberNameFor(text: string): string {
  const { references } = parseModelReference(text);
  const reference = references[0];
  let name: string;
  if (reference?.kind === "ollama") {
    name = `${reference.repository.split("/").pop()}${reference.tag === "latest" ? "" : `-${reference.tag}`}`;
  } else if (reference?.kind === "hf") {
    name = reference.file ? path.basename(reference.file) : `${reference.repo.split("/").pop()!.replace(/-gguf$/i, "")}${reference.quant ? `-${reference.quant}` : ""}`;
  } else if (reference?.kind === "url") {
    name = path.basename(decodeURIComponent(reference.url.pathname));
  } else {
    name = path.basename(text);
  }
  name = name.replace(/\.gguf$/i, "").replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[-.]+|-+$/g, "");
  return name === "" ? "model" : name;
}

/** Names for several models, made unique with `-2`, `-3`… in order, avoiding names already `taken`. */
export function uniqueMemberNames(texts: readonly string[], taken: Iterable<string> = []): string[] {
  const used = new Set<string>(taken);
  return texts.map((text) => {
    const base = memberNameFor(text);
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}-${n}`;
    used.add(name);
    return name;
  });
}
