/**
 * Row-sparse matrices in CSR form on typed arrays: row r's entries are cols/vals[rowStart[r] .. rowStart[r+1]).
 * Used for EVA's vocabulary maps and DeePEn's relative representations, which must stay O(|V|·k).
 */
export interface SparseRows {
  readonly rows: number;
  readonly columns: number;
  readonly rowStart: Uint32Array;
  readonly cols: Int32Array;
  readonly vals: Float32Array;
}

/** Appends rows one at a time; arrays grow geometrically and are trimmed once at the end. */
export class SparseRowsBuilder {
  private readonly rowStart: Uint32Array;
  private cols: Int32Array;
  private vals: Float32Array;
  private count = 0;
  private row = 0;

  constructor(private readonly rows: number, private readonly columns: number, expectedPerRow = 8) {
    this.rowStart = new Uint32Array(rows + 1);
    const capacity = Math.max(16, rows * expectedPerRow);
    this.cols = new Int32Array(capacity);
    this.vals = new Float32Array(capacity);
  }

  /** Adds the next row's entries (`n` of them from the given arrays). */
  addRow(cols: ArrayLike<number>, vals: ArrayLike<number>, n = cols.length): void {
    if (this.row >= this.rows) throw new Error("SparseRowsBuilder: too many rows");
    if (this.count + n > this.cols.length) {
      const capacity = Math.max(this.count + n, this.cols.length * 2);
      const c = new Int32Array(capacity);
      c.set(this.cols.subarray(0, this.count));
      const v = new Float32Array(capacity);
      v.set(this.vals.subarray(0, this.count));
      this.cols = c;
      this.vals = v;
    }
    for (let k = 0; k < n; k++) {
      this.cols[this.count] = cols[k]!;
      this.vals[this.count++] = vals[k]!;
    }
    this.rowStart[++this.row] = this.count;
  }

  build(): SparseRows {
    while (this.row < this.rows) this.rowStart[++this.row] = this.count;
    return {
      rows: this.rows,
      columns: this.columns,
      rowStart: this.rowStart,
      cols: this.cols.slice(0, this.count),
      vals: this.vals.slice(0, this.count),
    };
  }
}

/** Bytes the CSR arrays take. */
export function sparseBytes(m: SparseRows): number {
  return m.rowStart.byteLength + m.cols.byteLength + m.vals.byteLength;
}

/**
 * Indexes of the `k` largest values of `values[0..n)`, in descending order of value (ties: lower
 * index first). `order` is scratch space of at least k+1 entries. `nextAbove(from, floor)`, when
 * given, returns the first index ≥ from whose value is > floor (or n): a faster scan than this
 * loop's over the values that cannot enter (the alignment kernel's, four at a time).
 *
 * A heap of the best k so far, its worst entry at the root: O(n + m·log k) for m replacements, where
 * keeping a sorted list costs O(m·k) (the difference shows at DeePEn's k = 256 over 10⁵ anchors).
 */
export function topIndexes(values: ArrayLike<number>, n: number, k: number, order: Int32Array, nextAbove?: (from: number, floor: number) => number): number {
  if (k <= 0) return 0;
  /** Whether index i ranks below index j: a smaller value, or an equal value at a higher index. */
  const below = (i: number, j: number) => values[i]! < values[j]! || (values[i] === values[j] && i > j);
  const siftDown = (at: number, size: number) => {
    const item = order[at]!;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= size) break;
      if (child + 1 < size && below(order[child + 1]!, order[child]!)) child++;
      if (!below(order[child]!, item)) break;
      order[at] = order[child]!;
      at = child;
    }
    order[at] = item;
  };
  let size = 0;
  let floor = -Infinity;
  for (let i = 0; i < n; i = nextAbove && size === k ? nextAbove(i + 1, floor) : i + 1) {
    const v = values[i]!;
    if (size < k) {
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (!below(i, order[parent]!)) break;
        order[at] = order[parent]!;
        at = parent;
      }
      order[at] = i;
      if (size === k) floor = values[order[0]!]!;
    } else if (v > floor) {
      // i is the highest index so far, so an equal value ranks below the root and is skipped
      order[0] = i;
      siftDown(0, size);
      floor = values[order[0]!]!;
    }
  }
  // Heap sort: the worst goes last, then the next worst, leaving the best first.
  for (let end = size - 1; end > 0; end--) {
    const worst = order[0]!;
    order[0] = order[end]!;
    order[end] = worst;
    siftDown(0, end);
  }
  return size;
}
