#!/usr/bin/env python3
"""Offline check of the wgmma kernels' shared-memory addressing (no GPU needed): cuda/attention_prefill_sm90.cu
and, at the end, cuda/matmul_silu_sm90.cu (x and weight tiles, both K-major, one 64-wide column block).

The kernel writes Q, K and V tiles with 16-byte cp.async at sw128(rows, row, chunk) (column blocks of 64
bf16, 128-byte rows, chunk c of row r at c ^ (r & 7)), and wgmma reads them back through 128-byte-swizzle
descriptors: Q and K as K-major operands (start + 32 B per k16 step, a column block every 4 steps, SBO 1024),
V as an MN-major operand (start + 2048 B per 16 keys, LBO = a column block, SBO 1024). This script applies the
PTX ISA's canonical SW128 layouts (K-major ((8,m),(T,2k)):((8T,SBO),(1,T)), MN-major
((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)), Swizzle<3,4,3> on byte addresses) to every descriptor the kernel builds
and checks that each element it reads is the one the loader wrote there, for D = 64 and 128.
It checks the kernel's arithmetic against the documented layouts, not the hardware: only
`npm run test:gpu` on an H100 shows the kernel right. Prints the mismatch count; exits 1 on any.
"""
import sys

BM = BN = 128


def sw128(rows, row, chunk):
    return (chunk >> 3) * rows * 128 + row * 128 + (((chunk & 7) ^ (row & 7)) << 4)


def written(rows, row, col):  # byte address of element (row, col) of a [rows x D] tile, as the loader writes it
    return sw128(rows, row, col // 8) + (col % 8) * 2


def hw_swizzle(addr):  # the 128-byte swizzle: address bits [4:6] ^= bits [7:9]
    return addr ^ (((addr >> 7) & 7) << 4)


def kmajor(start, sbo, mn, k):
    return hw_swizzle(start + (mn % 8) * 128 + (mn // 8) * sbo + k * 2)


def mnmajor(start, lbo, sbo, k, mn):
    return hw_swizzle(start + (mn % 64) * 2 + (mn // 64) * lbo + (k % 8) * 128 + (k // 8) * sbo)


def main():
    bad = checked = 0
    for D in (64, 128):
        for wg in (0, 1):  # Q as A of S = Q K^T: the warpgroup's 64 rows (issue_qk)
            for kk in range(D // 16):
                start = (kk >> 2) * BM * 128 + wg * 64 * 128 + (kk & 3) * 32
                for m in range(64):
                    for k in range(16):
                        bad += kmajor(start, 1024, m, k) != written(BM, wg * 64 + m, 16 * kk + k)
                        checked += 1
        for kk in range(D // 16):  # K as B of S: N = 128 keys (issue_qk)
            start = (kk >> 2) * BN * 128 + (kk & 3) * 32
            for n in range(BN):
                for k in range(16):
                    bad += kmajor(start, 1024, n, k) != written(BN, n, 16 * kk + k)
                    checked += 1
        for kk in range(BN // 16):  # V as B of O += P V: K = 16 keys, N = D (issue_pv)
            start = kk * 2048
            for k in range(16):
                for n in range(D):
                    bad += mnmajor(start, BN * 128, 1024, k, n) != written(BN, 16 * kk + k, n)
                    checked += 1
    # cuda/matmul_silu_sm90.cu: the x tile [128 x 64] as A (each warpgroup's 64 rows) and the weight tile
    # [256 x 64] (128 gate rows, then 128 up rows) as B of one m64n256k16 per k16 step, both K-major
    for kk in range(4):
        for wg in (0, 1):
            start = wg * 64 * 128 + kk * 32
            for m in range(64):
                for k in range(16):
                    bad += kmajor(start, 1024, m, k) != written(128, wg * 64 + m, 16 * kk + k)
                    checked += 1
        for n in range(256):
            for k in range(16):
                bad += kmajor(kk * 32, 1024, n, k) != written(256, n, 16 * kk + k)
                checked += 1
    print(f"wgmma layout check: {checked} element reads, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
