import Bigmachine
import BigmachineTestSupport

// The binary the Bigmachine tests run as local workers, and as a driver of its own (see
// TestDriver). In a worker, Bigmachine.start serves forever.
let arguments = Array(CommandLine.arguments.dropFirst())
let bigmachine = try await Bigmachine.start(
  system: LocalSystem(keepalive: TestDriver.keepalive(arguments)), services: testServiceTypes)
try await TestDriver.main(bigmachine, arguments)
