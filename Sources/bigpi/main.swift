// bigpi: estimates π by sampling points in the unit square on N machines, as in the
// original bigmachine's walkthrough.
//
//   swift run -c release bigpi --machines 2 --samples 100000000
//   bigpi --system hosts --listen 0.0.0.0:7070 --secret-file /tmp/pi.secret --machines 2 ...
//   bigpi worker --driver HOST:7070 --secret-file /tmp/pi.secret      (on each worker host)

import Bigmachine

#if canImport(Glibc)
  import Glibc
#endif

/// Counts how many of `samples` random points in the unit square fall inside the circle.
struct Sampler: Service {
  static let name = "Sampler"
  static let methods: [String: ServiceMethod<Sampler>] = [
    "sample": .unary { (_, job: Job, _) in
      var state = job.seed
      var inside = 0
      for _ in 0..<job.samples {
        let x = Double(splitMix(&state) >> 11) * 0x1p-53
        let y = Double(splitMix(&state) >> 11) * 0x1p-53
        if x * x + y * y <= 1 { inside += 1 }
      }
      return inside
    }
  ]

  struct Job: Codable, Sendable {
    var samples: Int
    var seed: UInt64
  }
}

func splitMix(_ state: inout UInt64) -> UInt64 {
  state &+= 0x9E37_79B9_7F4A_7C15
  var z = state
  z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
  z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
  return z ^ (z >> 31)
}

let usage = """
  usage: bigpi [--machines N] [--samples S] [--system local|hosts] [--listen HOST:PORT] [--secret-file PATH]
         bigpi worker --driver HOST:PORT --secret-file PATH
  """

func fail(_ message: String) -> Never {
  var text = "bigpi: \(message)\n"
  text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
  exit(2)
}

var args = Array(CommandLine.arguments.dropFirst())
var options: [String: String] = [:]
let command = args.first == "worker" ? args.removeFirst() : "run"
while !args.isEmpty {
  let flag = args.removeFirst()
  guard flag.hasPrefix("--"), !args.isEmpty else { fail("unexpected \(flag)\n\(usage)") }
  options[String(flag.dropFirst(2))] = args.removeFirst()
}

if command == "worker" {
  guard let driver = options["driver"], let file = options["secret-file"] else { fail(usage) }
  try await Bigmachine.worker(driver: driver, secret: try ClusterSecret.read(fromFile: file), services: [Sampler.self])
}

let machines = Int(options["machines"] ?? "2") ?? 0
let samples = Int(options["samples"] ?? "100000000") ?? 0
guard machines > 0, samples > 0 else { fail("--machines and --samples take positive numbers\n\(usage)") }
let system: any System
switch options["system"] ?? "local" {
case "local": system = LocalSystem()
case "hosts":
  system = HostsSystem(
    listen: options["listen"] ?? "0.0.0.0:7070",
    secretFile: options["secret-file"] ?? "/tmp/bigpi-\(getpid()).secret")
default: fail(usage)
}

// Early in main: in a worker this serves and never returns.
let b = try await Bigmachine.start(system: system, services: [Sampler.self])
if let hosts = system as? HostsSystem {
  print("waiting for \(machines) workers: bigpi worker --driver \(hosts.address ?? "?") --secret-file FILE")
}
let clock = ContinuousClock()
let start = clock.now
let started = try await b.start(count: machines, services: [Sampler()])
for m in started {
  guard await m.wait(for: .running) == .running else { fail("\(m.address): \(m.error.map { "\($0)" } ?? "")") }
}
let booted = clock.now
let total = try await withThrowingTaskGroup(of: Int.self) { group in
  for (i, m) in started.enumerated() {
    let share = samples / machines + (i < samples % machines ? 1 : 0)
    group.addTask {
      try await m.call(
        "Sampler.sample", Sampler.Job(samples: share, seed: UInt64(i) &* 0x1234_5678_9ABC), returning: Int.self)
    }
  }
  var sum = 0
  for try await hits in group { sum += hits }
  return sum
}
let done = clock.now
let pi = 4 * Double(total) / Double(samples)
print("π ≈ \(pi) from \(samples) samples on \(machines) machines (error \(abs(pi - Double.pi)))")
print("machines started in \(booted - start), sampled in \(done - booted)")
await b.shutdown()
