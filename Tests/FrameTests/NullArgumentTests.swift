import CSupport
import Testing

/// The kernels that used to return nothing, and did nothing on a NULL pointer, now report
/// BS_EINVAL for a NULL pointer to more than zero elements, and BS_OK for the same call with
/// valid pointers or no elements.
@Suite struct NullArgumentTests {
  @Test func hashingBytesNeedsOffsetsOutputAndBytesForNonEmptyKeys() {
    let offsets: [Int64] = [0, 2, 2, 5]
    let bytes: [UInt8] = Array("abcde".utf8)
    var out = [UInt64](repeating: 0, count: 3)
    #expect(bs_hash_bytes(nil, bytes, 3, 0, &out) == BS_EINVAL)
    #expect(bs_hash_bytes(offsets, bytes, 3, 0, nil) == BS_EINVAL)
    #expect(bs_hash_bytes(offsets, nil, 3, 0, &out) == BS_EINVAL)
    #expect(out == [0, 0, 0], "nothing is written on an error")
    #expect(bs_hash_bytes(offsets, bytes, 3, 0, &out) == BS_OK)
    #expect(out[1] == bs_hash_one(nil, 0, 0))
    // Empty keys need no bytes; no rows need nothing.
    #expect(bs_hash_bytes([0, 0, 0], nil, 2, 0, &out) == BS_OK)
    #expect(bs_hash_bytes(nil, nil, 0, 0, nil) == BS_OK)
  }

  @Test func combiningHashesNeedsBothArrays() {
    var acc: [UInt64] = [1, 2]
    let h: [UInt64] = [3, 4]
    #expect(bs_hash_combine(nil, h, 2) == BS_EINVAL)
    #expect(bs_hash_combine(&acc, nil, 2) == BS_EINVAL)
    #expect(acc == [1, 2])
    #expect(bs_hash_combine(&acc, h, 2) == BS_OK)
    #expect(acc != [1, 2])
    #expect(bs_hash_combine(nil, nil, 0) == BS_OK)
  }

  @Test func gatheringBytesNeedsEveryArrayUnlessNothingMoves() {
    let offsets: [Int64] = [0, 3, 5]
    let bytes: [UInt8] = Array("abcde".utf8)
    let perm: [UInt32] = [1, 0]
    var dstOffsets = [Int64](repeating: 0, count: 3)
    #expect(bs_gather_bytes_offsets(offsets, perm, 2, &dstOffsets) == 5)
    var dst = [UInt8](repeating: 0, count: 5)
    #expect(bs_gather_bytes(nil, bytes, perm, 2, dstOffsets, &dst) == BS_EINVAL)
    #expect(bs_gather_bytes(offsets, nil, perm, 2, dstOffsets, &dst) == BS_EINVAL)
    #expect(bs_gather_bytes(offsets, bytes, nil, 2, dstOffsets, &dst) == BS_EINVAL)
    #expect(bs_gather_bytes(offsets, bytes, perm, 2, nil, &dst) == BS_EINVAL)
    #expect(bs_gather_bytes(offsets, bytes, perm, 2, dstOffsets, nil) == BS_EINVAL)
    #expect(dst == [0, 0, 0, 0, 0])
    #expect(bs_gather_bytes(offsets, bytes, perm, 2, dstOffsets, &dst) == BS_OK)
    #expect(String(decoding: dst, as: UTF8.self) == "deabc")
    // Rows that are all empty move no bytes, so need none.
    #expect(bs_gather_bytes([0, 0], nil, [0], 1, [0, 0], nil) == BS_OK)
    #expect(bs_gather_bytes_offsets(offsets, perm, 2, nil) == Int64(BS_EINVAL.rawValue))
  }

  @Test func rangePartitioningNeedsKeysOutputAndBounds() {
    let keys: [UInt64] = [5, 10, 15]
    let bounds: [UInt64] = [10]
    var out = [UInt32](repeating: 9, count: 3)
    #expect(bs_range_partition_u64(nil, 3, bounds, 1, &out) == BS_EINVAL)
    #expect(bs_range_partition_u64(keys, 3, nil, 1, &out) == BS_EINVAL)
    #expect(bs_range_partition_u64(keys, 3, bounds, 1, nil) == BS_EINVAL)
    #expect(out == [9, 9, 9])
    #expect(bs_range_partition_u64(keys, 3, bounds, 1, &out) == BS_OK)
    #expect(out == [0, 1, 1])
    #expect(bs_range_partition_u64(keys, 3, nil, 0, &out) == BS_OK, "no bounds: one range")
    #expect(out == [0, 0, 0])
  }

  @Test func iotaNeedsAPermutation() {
    #expect(bs_iota_u32(nil, 4) == BS_EINVAL)
    #expect(bs_iota_u32(nil, 0) == BS_OK)
    var perm = [UInt32](repeating: 7, count: 4)
    #expect(bs_iota_u32(&perm, 4) == BS_OK)
    #expect(perm == [0, 1, 2, 3])
  }

  /// A NULL combiner is an error for every call that can report one, and a no-op to free.
  @Test func aNullCombinerIsAnError() throws {
    let einval = Int64(BS_EINVAL.rawValue)
    #expect(bs_comb_reset(nil) == BS_EINVAL)
    #expect(bs_comb_groups(nil) == einval)
    #expect(bs_comb_bytes(nil) == einval)
    #expect(bs_comb_room(nil, 1 << 30, 0) == einval)
    #expect(bs_comb_add_agg(nil, BS_AGG_COUNT) == einval)
    #expect(bs_comb_hashes(nil) == nil)
    bs_comb_free(nil)

    let c = try #require(bs_comb_new(BS_COMB_KEY_U64, 16))
    defer { bs_comb_free(c) }
    #expect(bs_comb_groups_u64(c, [7], [bs_hash_u64(7, 0)], 1, nil) == einval)
    var gid: [UInt32] = [9]
    #expect(bs_comb_groups_u64(c, [7], [bs_hash_u64(7, 0)], 1, &gid) == 1)
    #expect(bs_comb_groups(c) == 1)
    #expect(bs_comb_bytes(c) > 0)
    #expect(bs_comb_room(c, 1 << 30, 0) > 0)
    #expect(bs_comb_reset(c) == BS_OK)
    #expect(bs_comb_groups(c) == 0)
  }
}
