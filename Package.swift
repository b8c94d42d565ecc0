// swift-tools-version:6.1
import PackageDescription

let package = Package(
  name: "Bigslice",
  products: [
    .library(name: "Frame", targets: ["Frame"]),
    .library(name: "SliceIO", targets: ["SliceIO"]),
    .library(name: "Bigmachine", targets: ["Bigmachine"]),
    .library(name: "Bigslice", targets: ["Bigslice"]),
    .library(name: "BigsliceOptions", targets: ["BigsliceOptions"]),
    .executable(name: "bigpi", targets: ["bigpi"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
    .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
    .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
    .package(url: "https://github.com/apple/swift-system", exact: "1.8.1"),
    .package(url: "https://github.com/apple/swift-configuration", exact: "1.4.0"),
    // `swift package generate-documentation --target Bigslice` (and Bigmachine) builds the DocC catalogs.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", exact: "1.5.0"),
  ],
  targets: [
    // C kernels: XXH3 hashing (header-inlined, so libxxhash-dev's header is needed but no
    // link), radix sort, the combiner table, zstd blocks, gzip (ISA-L, libisal-dev) and zstd
    // input files.
    .target(
      name: "CSupport",
      path: "CSupport",
      cSettings: [.define("XXH_INLINE_ALL")],
      linkerSettings: [.linkedLibrary("zstd"), .linkedLibrary("isal")]
    ),
    .target(name: "Frame", dependencies: ["CSupport"]),
    .target(
      name: "SliceIO",
      dependencies: ["Frame", "CSupport", .product(name: "SystemPackage", package: "swift-system")]
    ),
    // Machines over authenticated TCP: knows nothing of frames or slices.
    .target(
      name: "Bigmachine",
      dependencies: [
        "CSupport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "SystemPackage", package: "swift-system"),
      ]
    ),
    .target(
      name: "Bigslice",
      dependencies: [
        "Frame", "SliceIO", "Bigmachine",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "SystemPackage", package: "swift-system"),
      ]
    ),
    // The standard options of a bigslice program: flags (swift-argument-parser) over
    // environment variables and a JSON config file (swift-configuration) over defaults.
    .target(
      name: "BigsliceOptions",
      dependencies: [
        "Bigslice", "Bigmachine",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Configuration", package: "swift-configuration"),
        .product(name: "SystemPackage", package: "swift-system"),
      ]
    ),
    // The jobs of the demo and of the job benchmarks (BENCHMARKS.md W1–W5).
    .target(name: "Workloads", dependencies: ["Bigslice", "Bigmachine", "Frame"]),
    .executableTarget(
      name: "bigslice",
      dependencies: [
        "Bigslice", "Bigmachine", "BigsliceOptions", "Frame", "Workloads",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(name: "bigpi", dependencies: ["Bigmachine"]),
    .executableTarget(
      name: "bigslice-bench",
      dependencies: [
        "Bigslice", "Frame", "SliceIO", "CSupport", "Workloads", "Bigmachine",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      path: "Benchmarks/bigslice-bench"
    ),
    // Services shared by the Bigmachine tests and the worker binary they spawn.
    .target(
      name: "BigmachineTestSupport",
      dependencies: [
        "Bigmachine", .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Crypto", package: "swift-crypto"),
      ],
      path: "Tests/BigmachineTestSupport"
    ),
    .executableTarget(
      name: "bigmachine-testworker",
      dependencies: ["Bigmachine", "BigmachineTestSupport"],
      path: "Tests/BigmachineTestWorker"
    ),
    // Funcs shared by the Bigslice tests and the worker binary their local machines run.
    .target(
      name: "BigsliceTestFuncs", dependencies: ["Bigslice", "Bigmachine", "Frame", "Workloads"],
      path: "Tests/BigsliceTestFuncs"),
    .executableTarget(
      name: "bigslice-testworker",
      dependencies: ["Bigslice", "Bigmachine", "BigsliceTestFuncs", "Workloads"],
      path: "Tests/BigsliceTestWorker"
    ),
    .testTarget(name: "FrameTests", dependencies: ["Frame", "CSupport"]),
    .testTarget(name: "SliceIOTests", dependencies: ["SliceIO", "Frame", "CSupport"]),
    // The `bigslice` binary is a dependency so that the memory-budget test can run it as a
    // process of its own and read its peak RSS.
    .testTarget(
      name: "BigsliceTests",
      dependencies: [
        "Bigslice", "Frame", "SliceIO", "bigslice", "Bigmachine", "BigmachineTestSupport", "BigsliceTestFuncs",
        "bigslice-testworker", "BigsliceOptions",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "InMemoryLogging", package: "swift-log"),
      ]
    ),
    .testTarget(
      name: "BigmachineTests",
      dependencies: [
        "Bigmachine", "BigmachineTestSupport", "bigmachine-testworker",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ]
    ),
  ]
)
