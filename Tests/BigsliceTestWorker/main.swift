import Bigmachine
import Bigslice
import BigsliceTestFuncs
import Foundation
import Workloads

// The binary the Bigslice machine tests run as local workers: it registers the test funcs,
// then the session serves its driver (in a worker, the initializer never returns).
//
// Run by a test with `memory …`, it is a driver instead: it runs one job under a memory limit
// and prints what the memory tests check (see `MemoryRun`).
TestFuncs.register()
Workloads.register()
if Bigmachine.isWorker {
  _ = Session(executor: .machines(system: .local, count: 1, procs: 1))
}
let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.first == "memory" else {
  print("bigslice-testworker is run as a worker, or as `memory` by the Bigslice tests")
  exit(2)
}
do {
  print(try MemoryRun(Array(arguments.dropFirst())).run())
} catch {
  print("error: \(error)")
  exit(1)
}
