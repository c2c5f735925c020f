import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureWritableDirectory } from "../src/files/writable-directory.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(path.join(os.tmpdir(), "chorus-dir-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Whether this machine lets an unprivileged process mount a file system in its own namespace. */
function canMountPrivately(): boolean {
  return spawnSync("unshare", ["-rm", "true"]).status === 0;
}

describe("folders chorus writes into", () => {
  test("missing levels are created one at a time; nothing is left behind but the folders", () => {
    const target = path.join(tmp, "a", "b", "c");
    assert.equal(ensureWritableDirectory(path.relative(process.cwd(), target)), target);
    assert.ok(statSync(target).isDirectory());
    assert.deepEqual(readdirSync(target), []);
    assert.equal(ensureWritableDirectory(target), target, "an existing folder is fine");
  });

  test("a file on the path, or at the path, is named", () => {
    const file = path.join(tmp, "file");
    writeFileSync(file, "");
    assert.throws(() => ensureWritableDirectory(file), { message: `${file} is a file, not a folder` });
    assert.throws(() => ensureWritableDirectory(path.join(file, "x", "y")), { message: `${file} is a file, not a folder, so ${file}/x/y cannot be created` });
  });

  test("kernel pseudo file systems are refused before anything is created", () => {
    assert.throws(() => ensureWritableDirectory("/proc/chorus-x/y"), { message: "/proc is on procfs, a kernel pseudo file system that holds no ordinary files" });
    assert.throws(() => ensureWritableDirectory("/proc/self"), /\/proc\/self is on procfs/);
    assert.throws(() => ensureWritableDirectory("/sys/chorus-x"), { message: "/sys is on sysfs, a kernel pseudo file system that holds no ordinary files" });
    assert.ok(!existsSync("/proc/chorus-x") && !existsSync("/sys/chorus-x"));
  });

  test("a read-only file system is named as such", { skip: !canMountPrivately() && "needs `unshare -rm` to mount a read-only tmpfs" }, () => {
    const mountPoint = mkdtempSync(path.join(tmp, "ro-"));
    const script = `import { ensureWritableDirectory } from ${JSON.stringify(path.join(root, "src/files/writable-directory.ts"))};
      for (const dir of [process.argv[1], process.argv[1] + "/new/deeper"]) { try { ensureWritableDirectory(dir); console.log("ok"); } catch (e) { console.log(e.message); } }`;
    const r = spawnSync(
      "unshare",
      ["-rm", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$1" && exec "$2" --import tsx --input-type=module -e "$3" "$1"', "sh", mountPoint, process.execPath, script],
      { cwd: root, encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [`cannot write into ${mountPoint}: the file system is read-only`, `cannot create the folder ${mountPoint}/new: the file system is read-only`]);
  });
});
