/**
 * Folders chorus writes into (eval's --out, the alignment cache), checked before anything is
 * created: user paths never go to Node's recursive mkdir, which spins forever under /proc.
 */
import { mkdirSync, statfsSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

/** A folder that cannot be written; the message names the path and the problem (callers add the fix). */
export class DirectoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DirectoryError";
  }
}

/** Kernel pseudo file systems by statfs type (linux/magic.h): they hold no ordinary files. */
const PSEUDO_FILE_SYSTEMS = new Map<number, string>([
  [0x9fa0, "procfs"],
  [0x62656572, "sysfs"],
  [0x1cd1, "devpts"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0xcafe4a11, "bpf"],
  [0x62656570, "configfs"],
  [0x6165676c, "pstore"],
  [0xde5e81e4, "efivarfs"],
  [0x65735543, "fusectl"],
  [0xf97cff8c, "selinuxfs"],
  [0x42494e4d, "binfmt_misc"],
  [0x19800202, "mqueue"],
  [0x6e736673, "nsfs"],
  [0x958458f6, "hugetlbfs"],
]);

const REASONS: Record<string, string> = {
  ENOTDIR: "a part of the path is a file, not a folder",
  EEXIST: "a file of that name is in the way",
  EISDIR: "it is a folder",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is used up",
  ENAMETOOLONG: "the path is too long",
  ELOOP: "too many symbolic links on the path",
};

/** A file-system error in words ("the file system is read-only"), else its own message. */
export function fileErrorReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return (code && REASONS[code]) ?? (error as Error)?.message ?? String(error);
}

/**
 * Makes `dir` a folder chorus can write into, and returns its absolute path. The nearest existing
 * folder on the path must be a folder on an ordinary file system; the missing levels are created
 * one at a time; a probe file proves the folder takes files (read-only mounts, permissions, full disks).
 */
export function ensureWritableDirectory(dir: string): string {
  const absolute = path.resolve(dir);
  const missing: string[] = [];
  let existing = absolute;
  for (;;) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(existing).isDirectory();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const parent = path.dirname(existing);
      // ENOTDIR: a level above is a file; walking up reaches it and names it.
      if ((code === "ENOENT" || code === "ENOTDIR") && parent !== existing) {
        missing.unshift(existing);
        existing = parent;
        continue;
      }
      throw new DirectoryError(`cannot look at ${existing}: ${fileErrorReason(error)}`);
    }
    if (!isDirectory) throw new DirectoryError(existing === absolute ? `${absolute} is a file, not a folder` : `${existing} is a file, not a folder, so ${absolute} cannot be created`);
    break;
  }
  const pseudo = pseudoFileSystem(existing);
  if (pseudo) throw new DirectoryError(`${existing} is on ${pseudo}, a kernel pseudo file system that holds no ordinary files`);
  for (const level of missing) {
    try {
      mkdirSync(level);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && statSync(level, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw new DirectoryError(`cannot create the folder ${level}: ${fileErrorReason(error)}`);
    }
  }
  const probe = path.join(absolute, `.chorus-write-test-${process.pid}`);
  try {
    writeFileSync(probe, "");
    unlinkSync(probe);
  } catch (error) {
    throw new DirectoryError(`cannot write into ${absolute}: ${fileErrorReason(error)}`);
  }
  return absolute;
}

function pseudoFileSystem(folder: string): string | undefined {
  try {
    return PSEUDO_FILE_SYSTEMS.get(statfsSync(folder).type);
  } catch {
    return undefined; // statfs is not everywhere; the mkdir and the probe still report what fails
  }
}
