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
 * index first). `order` is scratch space of at least k+1 entries.
 */
export function topIndexes(values: ArrayLike<number>, n: number, k: number, order: Int32Array): number {
  let size = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (size === k && v <= values[order[size - 1]!]!) continue;
    let at = size < k ? size++ : size - 1;
    while (at > 0 && values[order[at - 1]!]! < v) {
      order[at] = order[at - 1]!;
      at--;
    }
    order[at] = i;
  }
  return size;
}
