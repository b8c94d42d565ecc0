"""Deterministic benchmark data, as defined in shared/BENCHMARKS.md.

Everything here is exact integer arithmetic except W5's pow, and is written so that the
Swift side can reproduce it bit for bit.

splitmix64(x), all arithmetic mod 2**64 (numpy uint64 arrays wrap silently; Swift &+ &* ):
    z = x + 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)

(key, value) table, n rows, seed s, K keys; row i in 0..<n:
    key   = splitmix64(i + s) % K                     (i + s mod 2**64)
    value = splitmix64(i + s + 2**40) % 1000
  Both are handed to the engines as int64 (they are < 2**63, so the bits are unchanged).
  W1: n=100M, s=0, K=1M.  W3: a = (n=20M, s=0), b = (n=20M, s=2**50), K=5M.
  W4: n=300M, s=0, K=30M.

W2 keys, row i in 0..<n:
    key = splitmix64(i) >> 1                          (fits int64, handed over as int64)

W5 words, word i in 0..<n (n = 100M):
    r = splitmix64(i)                                 (uint64)
    u = Double(r) / 2**64     -- r converted to float64 with round-to-nearest-even (C's
                                 (double)r, Swift's Double(r)); dividing by 2**64 is exact.
                                 u is in [0, 1]; u == 1.0 when r rounds up to 2**64.
    p = pow(1e6, u)           -- C99 pow on float64 (glibc on Linux; Swift: Glibc/Foundation pow)
    m = Int(floor(p)) - 1     -- 0 ... 999999 (p >= 1 since u >= 0)
    word = "w" + base36(m)    -- lowercase digits 0-9a-z, most significant first, no padding,
                                 base36(0) == "0"; e.g. 35 -> "z", 36 -> "10", 999999 -> "lfls"
  The file has 10 words a line, separated by one space, each line ending in "\\n" (the last
  line too, and a last partial line if n is not a multiple of 10). ASCII only.

  On pow: numpy's float64 power is computed here and then every value whose floor could
  depend on the last bits (p within 1e-9 relative of an integer) is recomputed with
  math.pow, which is the C library's pow. So the words are exactly those given by glibc's pow;
  numpy and math.pow also agree bit for bit on the values checked by `python3 gen.py --check`.
  glibc (>= 2.28) pow has < 0.52 ULP error and is not guaranteed correctly rounded, but a
  floor can only change if p is within ~1 ULP of an integer, about 3e-11 per word, so any libm
  of that quality gives the same file in practice.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

U64 = np.uint64
MASK64 = (1 << 64) - 1
CHUNK = 10_000_000

_C0 = U64(0x9E3779B97F4A7C15)
_C1 = U64(0xBF58476D1CE4E5B9)
_C2 = U64(0x94D049BB133111EB)
_S30, _S27, _S31 = U64(30), U64(27), U64(31)


def splitmix64_inplace(z: np.ndarray) -> np.ndarray:
    """splitmix64 of every element of a uint64 array, in place (one temporary)."""
    assert z.dtype == np.uint64
    t = np.empty_like(z)
    z += _C0
    np.right_shift(z, _S30, out=t)
    z ^= t
    z *= _C1
    np.right_shift(z, _S27, out=t)
    z ^= t
    z *= _C2
    np.right_shift(z, _S31, out=t)
    z ^= t
    return z


def splitmix64(x) -> np.ndarray:
    return splitmix64_inplace(np.array(x, dtype=np.uint64, copy=True))


def splitmix64_py(x: int) -> int:
    """Pure-Python reference (Python ints mod 2**64)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _indices(start: int, count: int, offset: int) -> np.ndarray:
    """uint64 array of (start + j + offset) mod 2**64 for j in 0..<count."""
    x = np.arange(count, dtype=np.uint64)
    x += U64((start + offset) & MASK64)
    return x


def kv_chunks(n: int, seed: int, keys: int, chunk: int = CHUNK):
    """Yield (key, value) int64 arrays of at most `chunk` rows, rows 0..<n in order."""
    K = U64(keys)
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        k = splitmix64_inplace(_indices(start, c, seed))
        k %= K
        v = splitmix64_inplace(_indices(start, c, seed + (1 << 40)))
        v %= U64(1000)
        yield k.view(np.int64), v.view(np.int64)


def kv_table(n: int, seed: int, keys: int, chunk: int = CHUNK):
    """(key, value) int64 arrays of n rows, filled chunk by chunk (no n-sized temporaries)."""
    key = np.empty(n, dtype=np.int64)
    value = np.empty(n, dtype=np.int64)
    pos = 0
    for k, v in kv_chunks(n, seed, keys, chunk):
        key[pos:pos + len(k)] = k
        value[pos:pos + len(v)] = v
        pos += len(k)
    return key, value


def w2_chunks(n: int, chunk: int = CHUNK):
    """Yield W2 keys splitmix64(i) >> 1 as int64 arrays of at most `chunk` rows."""
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        z = splitmix64_inplace(_indices(start, c, 0))
        z >>= U64(1)
        yield z.view(np.int64)


def w2_keys(n: int, chunk: int = CHUNK) -> np.ndarray:
    """W2 keys splitmix64(i) >> 1 as int64."""
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        z = splitmix64_inplace(_indices(start, c, 0))
        z >>= U64(1)
        out[start:start + c] = z.view(np.int64)
    return out


def w5_numbers(start: int, count: int) -> np.ndarray:
    """m = floor(pow(1e6, Double(splitmix64(i)) / 2**64)) - 1 for i in start..<start+count."""
    r = splitmix64_inplace(_indices(start, count, 0))
    u = r.astype(np.float64)          # round to nearest even, as C (double)r
    u /= 2.0 ** 64                    # exact
    p = np.power(1e6, u)
    f = np.floor(p)
    # values whose floor could depend on the last bits of pow: redo with the C library's pow
    near = (p - f < 1e-9 * p) | (f + 1.0 - p < 1e-9 * p)
    for j in np.flatnonzero(near):
        p[j] = math.pow(1e6, float(u[j]))
    np.floor(p, out=f)
    m = f.astype(np.int64)
    m -= 1
    return m


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(m: int) -> str:
    if m == 0:
        return "0"
    s = []
    while m:
        m, d = divmod(m, 36)
        s.append(_DIGITS[d])
    return "".join(reversed(s))


def w5_word(i: int) -> str:
    """Word i computed with Python scalars and math.pow (reference for checking)."""
    u = float(splitmix64_py(i)) / 2.0 ** 64
    return "w" + base36(int(math.floor(math.pow(1e6, u))) - 1)


def write_w5_text(path: str, n_words: int, chunk: int = 1_000_000) -> None:
    """Write the W5 text file atomically (path + '.tmp', then rename) and a '.meta' sidecar."""
    space = [("w" + base36(m) + " ").encode() for m in range(1_000_000)]
    newline = [w[:-1] + b"\n" for w in space]
    assert chunk % 10 == 0
    tmp = path + ".tmp"
    with open(tmp, "wb", buffering=16 << 20) as f:
        for start in range(0, n_words, chunk):
            c = min(chunk, n_words - start)
            m = w5_numbers(start, c).tolist()
            parts = [space[x] for x in m]
            for j in range(9, c, 10):           # chunk starts at a multiple of 10
                parts[j] = newline[m[j]]
            if c % 10:
                parts[-1] = newline[m[-1]]
            f.write(b"".join(parts))
    os.replace(tmp, path)
    with open(path + ".meta", "w") as f:
        f.write(f"bigslice-w5 v1 words={n_words}\n")


def ensure_w5_text(path: str, n_words: int, subprocess: bool = False) -> bool:
    """Make sure `path` holds the W5 text of n_words words (checked through the '.meta'
    sidecar); returns True if it was written, by a child process if `subprocess`."""
    meta = path + ".meta"
    want = f"bigslice-w5 v1 words={n_words}\n"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            if f.read() == want:
                return False
    if subprocess:
        import subprocess as sp
        sp.run([sys.executable, os.path.abspath(__file__), "--w5", path, str(n_words)], check=True)
    else:
        write_w5_text(path, n_words)
    return True


def _check(samples: int = 1_000_000) -> None:
    """Self-check: numpy vs pure Python splitmix64, numpy power vs math.pow, words."""
    idx = list(range(1000)) + [2**32 + 7, 2**50 + 3, 2**63, MASK64 - 5]
    got = splitmix64(np.array(idx, dtype=np.uint64)).tolist()
    assert got == [splitmix64_py(i) for i in idx], "splitmix64 mismatch"
    # numpy float64 power vs math.pow (C pow), bit for bit
    r = splitmix64(np.arange(samples, dtype=np.uint64))
    u = r.astype(np.float64) / 2.0 ** 64
    assert all(float(u[j]) == float(int(r[j])) / 2.0 ** 64 for j in range(0, samples, 997))
    p = np.power(1e6, u)
    ref = np.array([math.pow(1e6, x) for x in u.tolist()])
    diff = int(np.count_nonzero(p.view(np.uint64) != ref.view(np.uint64)))
    print(f"np.power vs math.pow: {samples} values, {diff} differ in any bit")
    words = w5_numbers(0, samples)
    bad = sum(1 for i in range(0, samples, 1013) if "w" + base36(int(words[i])) != w5_word(i))
    print(f"words vs scalar reference: {samples // 1013 + 1} checked, {bad} differ")
    print("first words:", " ".join(w5_word(i) for i in range(10)))
    k, v = kv_table(1000, 0, 1_000_000, chunk=300)
    assert k.tolist() == [splitmix64_py(i) % 1_000_000 for i in range(1000)]
    assert v.tolist() == [splitmix64_py(i + 2**40) % 1000 for i in range(1000)]
    k, v = kv_table(100, 2**50, 5_000_000)
    assert k.tolist() == [splitmix64_py(i + 2**50) % 5_000_000 for i in range(100)]
    assert v.tolist() == [splitmix64_py(i + 2**50 + 2**40) % 1000 for i in range(100)]
    assert w2_keys(100).tolist() == [splitmix64_py(i) >> 1 for i in range(100)]
    print("splitmix64(0..3):", [hex(splitmix64_py(i)) for i in range(4)])
    assert diff == 0 and bad == 0
    print("ok")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        _check(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    elif sys.argv[1:2] == ["--w5"]:
        write_w5_text(sys.argv[2], int(sys.argv[3]))
    else:
        print("usage: gen.py --check [SAMPLES] | --w5 PATH WORDS", file=sys.stderr)
        sys.exit(2)
