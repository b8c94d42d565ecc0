import Bigmachine
import BigmachineTestSupport

// The binary the Bigmachine tests run as local workers. In a worker, Bigmachine.start serves forever.
_ = try await Bigmachine.start(system: InProcessSystem(), services: testServiceTypes)
