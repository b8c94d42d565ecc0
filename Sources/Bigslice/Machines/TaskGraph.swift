#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The tasks of one invocation as compiled in this process, by their place in the compile.
struct TaskGraph {
  let tasks: [TaskRef: ShardTask]
  /// The tasks of the invocation's slice, by shard.
  let roots: [ShardTask]
  /// One line per task of the invocation: what the driver and a worker compare.
  let digest: [String]

  init(roots: [ShardTask], invocation: Int) {
    self.roots = roots
    var all: [TaskRef: ShardTask] = [:]
    var stack = roots
    // A shuffle's dependency is shared by every task reading it: walk it once.
    var walked = Set<ObjectIdentifier>()
    while let task = stack.popLast() {
      guard all[task.ref] == nil else { continue }
      all[task.ref] = task
      for dep in task.deps where walked.insert(ObjectIdentifier(dep)).inserted { stack.append(contentsOf: dep.tasks) }
      if case .split(let split) = task.partitioner { stack.append(contentsOf: split.upstream) }
    }
    tasks = all
    digest = all.values.filter { $0.ref.invocation == invocation }.sorted { $0.ref.index < $1.ref.index }.map {
      "\($0.ref.index) \($0.name) partitions \($0.partitions)"
    }
  }
}
