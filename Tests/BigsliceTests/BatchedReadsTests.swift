import Bigmachine
import BigsliceTestFuncs
import Frame
import NIOCore
import SliceIO
import Synchronization
import Testing

@testable import Bigslice

/// Remote partitions read many to a stream: the batching, the reply's format and its checks,
/// and a machine's side of it.
@Suite(.engine) struct BatchedReadsTests {
  static func part(_ shard: Int, partition: Int = 0) -> PartRef {
    PartRef(output: OutputRef(task: TaskRef(invocation: 1, index: shard), attempt: 1), partition: partition)
  }

  /// Machines that answer batched reads from `parts` as a machine does, recording each request.
  final class FakeMachines: Sendable {
    let parts: [PartRef: BatchedPart]
    let requests = Mutex<[(machine: String, parts: [PartRef])]>([])
    let failing = Mutex<Set<String>>([])

    init(_ parts: [PartRef: BatchedPart]) { self.parts = parts }

    func fetch(_ machine: String, _ request: ReadManyRequest) async throws -> ByteBuffer {
      requests.withLock { $0.append((machine, request.parts)) }
      if failing.withLock({ $0.contains(machine) }) {
        throw BigmachineError.fatal(address: machine, kind: .badArgument, message: "the machine is gone")
      }
      var reply = ByteBufferAllocator().buffer(capacity: 0)
      try await request.reply(chunk: 100, { self.parts[$0] ?? .missing("no \($0)") }) { chunk in
        var c = chunk
        reply.writeBuffer(&c)
      }
      return reply
    }
  }

  /// Parts on two machines, read in the order added: each fetch asks one machine for the part
  /// wanted and the ones after it there, up to the part count and the byte budget; every part
  /// is handed out once with its own bytes, a large one only marked, a missing one with why.
  @Test func partsAreFetchedInBatchesInTheOrderTheyAreRead() throws {
    var parts: [PartRef: BatchedPart] = [:]
    var order: [(PartRef, String)] = []
    for i in 0..<40 {
      let p = Self.part(i)
      parts[p] =
        i == 7 ? .large : i == 23 ? .missing("gone") : .bytes(ByteBuffer(repeating: UInt8(i), count: 10 + i * 3))
      order.append((p, i % 3 == 0 ? "b" : "a"))
    }
    let machines = FakeMachines(parts)
    let reads = BatchedReads(budget: 300, partLimit: 200, batchParts: 8) { try await machines.fetch($0, $1) }
    for (p, m) in order { reads.add(p, on: m) }
    for (i, (p, _)) in order.enumerated() {
      let got = try #require(try reads.take(p))
      switch got {
      case .bytes(let b): #expect(b == ByteBuffer(repeating: UInt8(i), count: 10 + i * 3))
      case .large: #expect(i == 7)
      case .missing(let why): #expect(i == 23 && why == "gone")
      }
      #expect(try reads.take(p) == nil, "part \(i) handed out twice")
    }
    let requests = machines.requests.withLock { $0 }
    // Every part was asked for, each of its own machine, in order, at most 8 and about 300
    // bytes at a time.
    for r in requests {
      #expect(r.parts.count <= 8)
      #expect(r.parts.allSatisfy { p in order.first { $0.0 == p }!.1 == r.machine })
      let shards = r.parts.map(\.output.task.index)
      #expect(shards == shards.sorted())
    }
    #expect(requests.count < 40, "\(requests.count) fetches for 40 parts")
    let counts = reads.counts
    #expect(counts.fetches == requests.count)
    #expect(counts.batchedParts == 39)
    // Parts cut off by the budget were asked for again: more parts asked than there are.
    #expect(requests.reduce(0) { $0 + $1.parts.count } > 40)
  }

  /// A failed fetch throws for the part being opened; the parts after it are asked for again
  /// when their turn comes, and once the machine answers they are read.
  @Test func aFailedFetchFailsThePartOpenedAndTheRestAreAskedAgain() throws {
    var parts: [PartRef: BatchedPart] = [:]
    for i in 0..<6 { parts[Self.part(i)] = .bytes(ByteBuffer(bytes: [UInt8(i)])) }
    let machines = FakeMachines(parts)
    let reads = BatchedReads(budget: 1000, partLimit: 100, batchParts: 100) { try await machines.fetch($0, $1) }
    for i in 0..<6 { reads.add(Self.part(i), on: "a") }
    machines.failing.withLock { _ = $0.insert("a") }
    #expect(throws: BigmachineError.self) { try reads.take(Self.part(0)) }
    machines.failing.withLock { $0 = [] }
    for i in 1..<6 {
      guard case .bytes(let b)? = try reads.take(Self.part(i)) else {
        Issue.record("part \(i) was not read")
        continue
      }
      #expect(b == ByteBuffer(bytes: [UInt8(i)]))
    }
    #expect(machines.requests.withLock { $0.map(\.parts.count) } == [6, 5])
  }

  /// Replies no honest machine sends are refused, naming the machine and what is wrong.
  @Test func malformedRepliesAreRefused() throws {
    func reply(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
    let cases: [([UInt8], String)] = [
      ([0, 0, 0, 0], "a cut entry header"),
      ([9, 0, 0, 0, 0], "unknown kind 9"),
      ([0, 0, 0, 0, 50] + [UInt8](repeating: 1, count: 50), "over the limit of 40"),
      ([0, 0, 0, 0, 10, 1, 2], "a part cut at 2 of 10 bytes"),
      ([1, 0, 0, 0, 1, 0], "a large entry with 1 bytes"),
      ([2, 0, 0, 0x10, 1], "a missing entry's reason"),
      ([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0], "more entries than the 2 parts"),
    ]
    for (bytes, why) in cases {
      #expect {
        try BatchedPart.parse(reply(bytes), parts: 2, partLimit: 40, from: "10.0.0.1:5")
      } throws: {
        "\($0)".contains(why) && "\($0)".contains("10.0.0.1:5")
      }
    }
    // Random bytes never crash the parser.
    var rng = SplitMix64(seed: 5)
    for _ in 0..<20_000 {
      let bytes = (0..<Int(rng.next() % 40)).map { _ in UInt8(rng.next() % 4 == 0 ? rng.next() % 3 : rng.next() & 255) }
      _ = try? BatchedPart.parse(reply(bytes), parts: 3, partLimit: 16, from: "x")
    }
    // More bytes than the request allows are refused as they arrive.
    let request = ReadManyRequest(parts: [Self.part(0)], budget: 10, partLimit: 10)
    let stream = AsyncThrowingStream<ByteBuffer, any Error> { c in
      for _ in 0..<10 { c.yield(ByteBuffer(bytes: [UInt8](repeating: 0, count: 1000))) }
      c.finish()
    }
    #expect {
      _ = try ThreadPool.shared.blockingAwait { try await gatherReply(stream, to: request, from: "m") }
    } throws: { "\($0)".contains("more bytes than") }
  }

  /// A machine answers a batched read of a kept result's partitions: each as its blocks, a
  /// part over the limit marked large, the budget respected, a part it does not hold said
  /// missing; a request over the limits is refused as a bad request.
  @Test func aMachineAnswersBatchedReadsOfItsOutputs() async throws {
    TestFuncs.register()
    let (k, v) = randomPairs(20_000, keys: 500, seed: 3)
    let session = Session(executor: .machines(system: .inProcess, count: 1, procs: 2))
    defer { session.shutdown() }
    let result = try await session.run(TestFuncs.reduceSum, 4, k, v)
    let machine = try #require(session.machines.first)
    let outputs = result.tasks.compactMap { task -> (PartRef, Int)? in
      guard case .remote(let remote)? = task.output?.storage else { return nil }
      return (PartRef(output: remote.ref, partition: 0), task.output!.rows)
    }
    try #require(outputs.count == 4)
    func readMany(_ parts: [PartRef], budget: Int, partLimit: Int) async throws -> [BatchedPart] {
      let request = ReadManyRequest(parts: parts, budget: budget, partLimit: partLimit)
      let reply = try await gatherReply(
        try await machine.stream("Bigslice.readMany", request), to: request, from: machine.address)
      return try BatchedPart.parse(reply, parts: parts.count, partLimit: partLimit, from: machine.address)
    }
    let bogus = PartRef(output: OutputRef(task: outputs[0].0.output.task, attempt: 999), partition: 0)
    let all = try await readMany(outputs.map(\.0) + [bogus], budget: 1 << 20, partLimit: 1 << 20)
    try #require(all.count == 5)
    var rows = 0
    for (entry, (part, count)) in zip(all, outputs) {
      guard case .bytes(let bytes) = entry else {
        Issue.record("\(part): \(entry)")
        continue
      }
      let frame = try decodeBlocks(Array(bytes.readableBytesView), schema: nil, name: "\(part)")
      #expect(frame?.count ?? 0 == count)
      rows += frame?.count ?? 0
    }
    #expect(rows == Set(k).count)
    guard case .missing(let why) = all[4] else { throw BatchedReadError.malformed(machine: "", "\(all[4])") }
    #expect(why.contains("attempt 999"))

    // A limit below each part marks all large; a budget below two parts sends one.
    let large = try await readMany(outputs.map(\.0), budget: 1 << 20, partLimit: 16)
    #expect(large.count == 4 && large.allSatisfy { if case .large = $0 { true } else { false } })
    let one = try await readMany(outputs.map(\.0), budget: 16, partLimit: 16 << 10)
    #expect(one.count == 1)

    for request in [
      (ReadManyRequest(parts: Array(repeating: outputs[0].0, count: 2000), budget: 1000, partLimit: 10), "over 1024"),
      (ReadManyRequest(parts: [outputs[0].0], budget: 1 << 30, partLimit: 10), "BadRequest"),
      (ReadManyRequest(parts: [outputs[0].0], budget: 100, partLimit: 0), "BadRequest"),
    ] {
      await #expect {
        _ = try await gatherReply(
          try await machine.stream("Bigslice.readMany", request.0), to: request.0, from: machine.address)
      } throws: { "\($0)".contains(request.1) }
    }
  }

  /// A shuffle across two machines reads the other machine's partitions in batches: far
  /// fewer fetches than partitions, none streamed alone, and the answer right.
  @Test(arguments: [16, 200])
  func aShuffleReadsOtherMachinesPartitionsInBatches(shards: Int) async throws {
    TestFuncs.register()
    let (k, v) = randomPairs(40_000, keys: 3_000, seed: UInt64(shards))
    let session = Session(executor: .machines(system: .inProcess, count: 2, procs: 2))
    defer { session.shutdown() }
    let result = try await session.run(TestFuncs.reduceSum, shards, k, v)
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    #expect(Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums)
    let handles = try #require(session.remote?.handles)
    let fetches = handles.reduce(0) { $0 + $1.batchedFetches.load(ordering: .relaxed) }
    let parts = handles.reduce(0) { $0 + $1.batchedParts.load(ordering: .relaxed) }
    let streamed = handles.reduce(0) { $0 + $1.streamedParts.load(ordering: .relaxed) }
    #expect(parts > shards, "\(parts) parts batched")
    #expect(fetches > 0 && fetches * 4 <= parts, "\(fetches) fetches for \(parts) parts")
    #expect(streamed == 0)
  }

  /// A machine's packed sections give each partition its rows, are decoded once while they fit
  /// (kept until each partition with rows is read, then let go), keep to their limit, and go
  /// with their output.
  @Test(arguments: [0, 1_000, 1 << 20])
  func packedSectionsGiveEachPartitionItsRowsAndLetGo(limit: Int) throws {
    let dir = try SpillDirectory()
    let partitions = 60
    var rng = SplitMix64(seed: UInt64(limit) + 1)
    let files = try writeShuffleFiles(4, partitions: partitions, packBytes: 200, in: dir, rng: &rng) {
      _, rng in Int.random(in: 0..<5, using: &rng)
    }
    let sections = PackedSections(limit: limit)
    for p in 0..<partitions {
      for (u, (file, written)) in files.enumerated() where file.place(p).isShared {
        let ref = OutputRef(task: TaskRef(invocation: 1, index: u), attempt: 1)
        let got = try sections.frames(file, of: ref, partition: p).flatMap {
          $0.columns[0].scalars(Int64.self).map { Int($0) }
        }
        #expect(got == written[p], "upstream \(u) partition \(p)")
        #expect(sections.bytes <= limit)
        if limit == 1 << 20 && p == 0 { #expect(sections.bytes > 0, "nothing kept") }
      }
    }
    #expect(sections.bytes == 0)
    #expect((0..<partitions).contains { files[0].0.place($0).isShared }, "nothing packed")
    // Sections kept for an output go when it is dropped.
    let (file, _) = files[0]
    let ref = OutputRef(task: TaskRef(invocation: 2, index: 0), attempt: 1)
    if let p = (0..<partitions).first(where: { file.place($0).isShared && !file.isEmpty($0) }) {
      _ = try sections.frames(file, of: ref, partition: p)
      sections.drop([ref])
      #expect(sections.bytes == 0)
    }
  }
}
