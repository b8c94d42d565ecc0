// swift-tools-version:6.1
import PackageDescription

let package = Package(
  name: "Bigslice",
  products: [
    .library(name: "Frame", targets: ["Frame"]),
    .library(name: "SliceIO", targets: ["SliceIO"]),
    .library(name: "Bigslice", targets: ["Bigslice"]),
  ],
  targets: [
    // C kernels: XXH3 hashing (header-inlined, so libxxhash-dev's header is needed but no
    // link), radix sort, the combiner table and zstd blocks.
    .target(
      name: "CSupport",
      path: "CSupport",
      cSettings: [.define("XXH_INLINE_ALL")],
      linkerSettings: [.linkedLibrary("zstd")]
    ),
    .target(name: "Frame", dependencies: ["CSupport"]),
    .target(name: "SliceIO", dependencies: ["Frame", "CSupport"]),
    .target(name: "Bigslice", dependencies: ["Frame", "SliceIO", "CSupport"]),
    // The jobs of the demo and of the job benchmarks (BENCHMARKS.md W1–W5).
    .target(name: "Workloads", dependencies: ["Bigslice", "Frame"]),
    .executableTarget(name: "bigslice", dependencies: ["Bigslice", "Frame", "Workloads"]),
    .executableTarget(
      name: "bigslice-bench",
      dependencies: ["Bigslice", "Frame", "SliceIO", "CSupport", "Workloads"],
      path: "Benchmarks/bigslice-bench"
    ),
    .testTarget(name: "FrameTests", dependencies: ["Frame", "CSupport"]),
    .testTarget(name: "SliceIOTests", dependencies: ["SliceIO", "Frame", "CSupport"]),
    .testTarget(name: "BigsliceTests", dependencies: ["Bigslice", "Frame", "SliceIO"]),
  ]
)
