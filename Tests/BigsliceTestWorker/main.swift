import Bigslice
import BigsliceTestFuncs

// The binary the Bigslice machine tests run as local workers: it registers the test funcs,
// then the session serves its driver (in a worker, the initializer never returns).
TestFuncs.register()
_ = Session(executor: .machines(system: .local, count: 1, procs: 1))
print("bigslice-testworker is only run as a worker by the Bigslice tests")
