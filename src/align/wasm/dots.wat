;; The alignment builders' WebAssembly kernel (f32x4 SIMD over one shared memory): blocks of dot
;; products, out[i · outStride + j] = row i · column j, and the per-row work the builders need
;; around them (sumSquares, expSum, dot64, firstAbove for DeePEn; maxInto, csls for EVA).
;;
;; Compiled to dots.wasm by `npm run build:wasm` (wabt); test/align-kernel.test.ts checks that the
;; committed dots.wasm is what this file compiles to.
;;
;; `dots`: the caller guarantees nRows even, nCols a multiple of 4, width a multiple of 4 and > 0,
;; and 16-byte-aligned vectors (it pads the matrices, and repeats a row or column to fill a tile);
;; rowAt and colAt point at i32 arrays holding each row's and column's byte address.
;; Register blocking: two rows × four columns per pass over the width, in eight f32x4 accumulators,
;; so each load of a row serves four columns and each load of a column two rows; with the two row
;; vectors and one column vector they fit x64's 16 vector registers (3 rows × 4 columns spill and
;; measured 25 % slower, 4 × 2 10 % slower).
;; Cache blocking: columns outer, rows inner, so four columns stay in L1 while the caller's tile of
;; rows (sized to fit in L2) passes under them, and the columns stream from memory once per tile.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; [sum of a's lanes, sum of b's, sum of c's, sum of d's]
  (func $sums (param $a v128) (param $b v128) (param $c v128) (param $d v128) (result v128)
    (local $ab v128)
    (local $cd v128)
    ;; ab = [a0+a2, b0+b2, a1+a3, b1+b3], cd likewise
    (local.set $ab
      (f32x4.add
        (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a) (local.get $b))
        (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a) (local.get $b))))
    (local.set $cd
      (f32x4.add
        (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $c) (local.get $d))
        (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $c) (local.get $d))))
    (f32x4.add
      (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $ab) (local.get $cd))
      (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $ab) (local.get $cd))))

  (func (export "dots")
    (param $rowAt i32) (param $nRows i32)
    (param $colAt i32) (param $nCols i32)
    (param $width i32) (param $out i32) (param $outStride i32)
    (local $bytes i32)
    (local $i i32) (local $j i32) (local $d i32)
    (local $r0 i32) (local $r1 i32)
    (local $c0 i32) (local $c1 i32) (local $c2 i32) (local $c3 i32)
    (local $x0 v128) (local $x1 v128) (local $y v128)
    (local $s00 v128) (local $s01 v128) (local $s02 v128) (local $s03 v128)
    (local $s10 v128) (local $s11 v128) (local $s12 v128) (local $s13 v128)
    (local $at i32)
    (local.set $bytes (i32.shl (local.get $width) (i32.const 2)))
    (block $columnsDone
      (loop $columns
        (br_if $columnsDone (i32.ge_u (local.get $j) (local.get $nCols)))
        (local.set $at (i32.add (local.get $colAt) (i32.shl (local.get $j) (i32.const 2))))
        (local.set $c0 (i32.load (local.get $at)))
        (local.set $c1 (i32.load offset=4 (local.get $at)))
        (local.set $c2 (i32.load offset=8 (local.get $at)))
        (local.set $c3 (i32.load offset=12 (local.get $at)))
        (local.set $i (i32.const 0))
        (block $rowsDone
          (loop $rows
            (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $nRows)))
            (local.set $at (i32.add (local.get $rowAt) (i32.shl (local.get $i) (i32.const 2))))
            (local.set $r0 (i32.load (local.get $at)))
            (local.set $r1 (i32.load offset=4 (local.get $at)))
            (local.set $s00 (v128.const i32x4 0 0 0 0))
            (local.set $s01 (v128.const i32x4 0 0 0 0))
            (local.set $s02 (v128.const i32x4 0 0 0 0))
            (local.set $s03 (v128.const i32x4 0 0 0 0))
            (local.set $s10 (v128.const i32x4 0 0 0 0))
            (local.set $s11 (v128.const i32x4 0 0 0 0))
            (local.set $s12 (v128.const i32x4 0 0 0 0))
            (local.set $s13 (v128.const i32x4 0 0 0 0))
            (local.set $d (i32.const 0))
            (loop $depth
              (local.set $x0 (v128.load (i32.add (local.get $r0) (local.get $d))))
              (local.set $x1 (v128.load (i32.add (local.get $r1) (local.get $d))))
              (local.set $y (v128.load (i32.add (local.get $c0) (local.get $d))))
              (local.set $s00 (f32x4.add (local.get $s00) (f32x4.mul (local.get $x0) (local.get $y))))
              (local.set $s10 (f32x4.add (local.get $s10) (f32x4.mul (local.get $x1) (local.get $y))))
              (local.set $y (v128.load (i32.add (local.get $c1) (local.get $d))))
              (local.set $s01 (f32x4.add (local.get $s01) (f32x4.mul (local.get $x0) (local.get $y))))
              (local.set $s11 (f32x4.add (local.get $s11) (f32x4.mul (local.get $x1) (local.get $y))))
              (local.set $y (v128.load (i32.add (local.get $c2) (local.get $d))))
              (local.set $s02 (f32x4.add (local.get $s02) (f32x4.mul (local.get $x0) (local.get $y))))
              (local.set $s12 (f32x4.add (local.get $s12) (f32x4.mul (local.get $x1) (local.get $y))))
              (local.set $y (v128.load (i32.add (local.get $c3) (local.get $d))))
              (local.set $s03 (f32x4.add (local.get $s03) (f32x4.mul (local.get $x0) (local.get $y))))
              (local.set $s13 (f32x4.add (local.get $s13) (f32x4.mul (local.get $x1) (local.get $y))))
              (local.set $d (i32.add (local.get $d) (i32.const 16)))
              (br_if $depth (i32.lt_u (local.get $d) (local.get $bytes))))
            ;; out[i][j..j+4) and out[i+1][j..j+4)
            (local.set $at
              (i32.add (local.get $out)
                (i32.shl (i32.add (i32.mul (local.get $i) (local.get $outStride)) (local.get $j)) (i32.const 2))))
            (v128.store (local.get $at)
              (call $sums (local.get $s00) (local.get $s01) (local.get $s02) (local.get $s03)))
            (v128.store (i32.add (local.get $at) (i32.shl (local.get $outStride) (i32.const 2)))
              (call $sums (local.get $s10) (local.get $s11) (local.get $s12) (local.get $s13)))
            (local.set $i (i32.add (local.get $i) (i32.const 2)))
            (br $rows)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $columns))))

  ;; Σ v[k]² over n floats at `at`, accumulated in float64 (the squares of float32 values are exact).
  (func (export "sumSquares") (param $at i32) (param $n i32) (result f64)
    (local $end i32) (local $v v128) (local $lo v128) (local $hi v128) (local $x f64)
    (local.set $end (i32.add (local.get $at) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (local.set $lo (v128.const f64x2 0 0))
    (local.set $hi (v128.const f64x2 0 0))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $v (v128.load (local.get $at)))
        (local.set $lo (f64x2.add (local.get $lo)
          (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (f64x2.promote_low_f32x4 (local.get $v)))))
        (local.set $v (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))
        (local.set $hi (f64x2.add (local.get $hi)
          (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (f64x2.promote_low_f32x4 (local.get $v)))))
        (local.set $at (i32.add (local.get $at) (i32.const 16)))
        (br $four)))
    (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
    (local.set $x (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $tailDone
      (loop $tail
        (br_if $tailDone (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $x (f64.add (local.get $x)
          (f64.mul (f64.promote_f32 (f32.load (local.get $at))) (f64.promote_f32 (f32.load (local.get $at))))))
        (local.set $at (i32.add (local.get $at) (i32.const 4)))
        (br $tail)))
    (local.get $x))

  ;; e^x lane by lane (Cephes' expf: x = n·ln 2 + r, |r| ≤ ln 2 / 2, a degree-5 polynomial for e^r,
  ;; 2^n built in the exponent bits), within 2 ulp of float32; 0 below -87.3 (where e^x would need
  ;; a subnormal), never +∞ for the x ≤ 0 it is used on.
  (func $exp (param $x v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128)
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $x) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
    ;; r = x - n·ln 2, with ln 2 split in two so that n·C1 is exact
    (local.set $r (f32x4.sub (local.get $x) (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375))))
    (local.set $r (f32x4.add (local.get $r) (f32x4.mul (local.get $n) (v128.const f32x4 2.12194440e-4 2.12194440e-4 2.12194440e-4 2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    ;; e^r = 1 + r + r²·p
    (local.set $p (f32x4.add
      (f32x4.add (f32x4.mul (f32x4.mul (local.get $r) (local.get $r)) (local.get $p)) (local.get $r))
      (v128.const f32x4 1 1 1 1)))
    ;; × 2^n; n ≥ -126 above the cutoff, so the biased exponent stays ≥ 1
    (local.set $p (f32x4.mul (local.get $p)
      (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127)) (i32.const 23))))
    (v128.andnot (local.get $p)
      (f32x4.lt (local.get $x) (v128.const f32x4 -87.3 -87.3 -87.3 -87.3))))

  ;; Σ e^(v[k]·scale - shift) over n floats at `at`, accumulated in float64.
  (func (export "expSum") (param $at i32) (param $n i32) (param $scale f32) (param $shift f32) (result f64)
    (local $end i32) (local $e v128) (local $lo v128) (local $hi v128)
    (local $s v128) (local $m v128) (local $x f64)
    (local.set $s (f32x4.splat (local.get $scale)))
    (local.set $m (f32x4.splat (local.get $shift)))
    (local.set $end (i32.add (local.get $at) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (local.set $lo (v128.const f64x2 0 0))
    (local.set $hi (v128.const f64x2 0 0))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $e (call $exp (f32x4.sub (f32x4.mul (v128.load (local.get $at)) (local.get $s)) (local.get $m))))
        (local.set $lo (f64x2.add (local.get $lo) (f64x2.promote_low_f32x4 (local.get $e))))
        (local.set $hi (f64x2.add (local.get $hi)
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
        (local.set $at (i32.add (local.get $at) (i32.const 16)))
        (br $four)))
    (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
    (local.set $x (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 3)) (i32.const 2))))
    (block $tailDone
      (loop $tail
        (br_if $tailDone (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $x (f64.add (local.get $x) (f64.promote_f32 (f32x4.extract_lane 0
          (call $exp (f32x4.splat (f32.sub (f32.mul (f32.load (local.get $at)) (local.get $scale)) (local.get $shift))))))))
        (local.set $at (i32.add (local.get $at) (i32.const 4)))
        (br $tail)))
    (local.get $x))

  ;; x · y in float64 (exact products of the float32 values), over n floats, n a multiple of 4.
  (func (export "dot64") (param $x i32) (param $y i32) (param $n i32) (result f64)
    (local $end i32) (local $u v128) (local $v v128) (local $lo v128) (local $hi v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $lo (v128.const f64x2 0 0))
    (local.set $hi (v128.const f64x2 0 0))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $u (v128.load (local.get $x)))
        (local.set $v (v128.load (local.get $y)))
        (local.set $lo (f64x2.add (local.get $lo)
          (f64x2.mul (f64x2.promote_low_f32x4 (local.get $u)) (f64x2.promote_low_f32x4 (local.get $v)))))
        (local.set $hi (f64x2.add (local.get $hi)
          (f64x2.mul
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $u) (local.get $u)))
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $y (i32.add (local.get $y) (i32.const 16)))
        (br $four)))
    (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
    (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))))

  ;; The first k in [from, n) with v[k] > floor for the n floats at `at`, or n if none: lets a
  ;; top-k selection skip, four at a time, the values that cannot enter it.
  (func (export "firstAbove") (param $at i32) (param $from i32) (param $n i32) (param $floor f32) (result i32)
    (local $f v128) (local $bits i32)
    (local.set $f (f32x4.splat (local.get $floor)))
    (block $scalar
      (loop $four
        (br_if $scalar (i32.gt_u (i32.add (local.get $from) (i32.const 4)) (local.get $n)))
        (local.set $bits (i32x4.bitmask (f32x4.gt
          (v128.load (i32.add (local.get $at) (i32.shl (local.get $from) (i32.const 2))))
          (local.get $f))))
        (if (local.get $bits) (then (return (i32.add (local.get $from) (i32.ctz (local.get $bits))))))
        (local.set $from (i32.add (local.get $from) (i32.const 4)))
        (br $four)))
    (block $done
      (loop $one
        (br_if $done (i32.ge_u (local.get $from) (local.get $n)))
        (if (f32.gt (f32.load (i32.add (local.get $at) (i32.shl (local.get $from) (i32.const 2)))) (local.get $floor))
          (then (return (local.get $from))))
        (local.set $from (i32.add (local.get $from) (i32.const 1)))
        (br $one)))
    (local.get $n))

  ;; EVA's r_T: into[j] = max(into[j], v[j]) over n floats, n a multiple of 4 (pmax: as
  ;; `if (v > into) into = v`, keeping `into` when equal).
  (func (export "maxInto") (param $into i32) (param $v i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $into) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $into) (local.get $end)))
        (v128.store (local.get $into) (f32x4.pmax (v128.load (local.get $into)) (v128.load (local.get $v))))
        (local.set $into (i32.add (local.get $into) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (br $four))))

  ;; EVA's CSLS scores in place: v[j] = 2·v[j] - nearest[j] over n floats, n a multiple of 4
  ;; (2·v is exact, so the one rounding is the JavaScript path's).
  (func (export "csls") (param $v i32) (param $nearest i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $v) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $four
        (br_if $done (i32.ge_u (local.get $v) (local.get $end)))
        (v128.store (local.get $v)
          (f32x4.sub (f32x4.add (v128.load (local.get $v)) (v128.load (local.get $v))) (v128.load (local.get $nearest))))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (local.set $nearest (i32.add (local.get $nearest) (i32.const 16)))
        (br $four)))))
