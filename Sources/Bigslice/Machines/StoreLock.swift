import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Marks a machine's store directory as in use for as long as its process lives, so that the
/// stores of dead workers can be told from live ones and removed.
///
/// The worker holds an exclusive `flock` on `.lock` inside its store. The kernel drops the lock
/// when the process ends however it ends (SIGKILL included), so a store whose lock can be taken
/// has no owner. A worker removes its own store on every exit it controls (shutdown, and
/// `exit` through `atexit`), and removes the ownerless stores beside its own before it starts.
final class StoreLock: @unchecked Sendable {
  /// The prefix of store directory names.
  static let prefix = "bigslice-store"
  private static let lockName = ".lock"
  /// A store with no lock file yet is its owner's for this long after it was made.
  private static let youngSeconds = 60

  private let fd: Int32

  /// Locks `directory`, a new store, and has it removed when the process exits.
  /// - Throws: `BigsliceError.invalidArgument` when the lock file cannot be made.
  init(directory: String) throws {
    // Locked under another name first, so that `.lock` is never seen unlocked.
    let made = "\(directory)/\(StoreLock.lockName).new"
    fd = open(made, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
    guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0, rename(made, "\(directory)/\(StoreLock.lockName)") == 0 else {
      throw BigsliceError.invalidArgument("cannot lock the machine's store \(directory): errno \(errno)")
    }
    StoreLock.atExit.withLock { $0.append(directory) }
    StoreLock.registered
  }

  deinit { close(fd) }

  /// Removes the stores under `parent` whose process is gone; returns their paths.
  static func removeAbandoned(in parent: String) -> [String] {
    var removed: [String] = []
    for name in directoryEntries(parent) where name.hasPrefix(prefix + "-") {
      let path = "\(parent)/\(name)"
      let lock = open("\(path)/\(lockName)", O_RDWR | O_CLOEXEC)
      if lock < 0 {
        // Made by a worker that has not locked it yet, or by one that died before it did.
        var info = stat()
        guard errno == ENOENT, stat(path, &info) == 0, time(nil) - info.st_mtim.tv_sec > youngSeconds else { continue }
      } else {
        defer { close(lock) }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else { continue }
      }
      removeDirectory(path)
      removed.append(path)
    }
    return removed
  }

  /// Stores to remove when the process exits.
  private static let atExit = Mutex<[String]>([])
  private static let registered: Void = {
    atexit {
      for path in StoreLock.atExit.withLock({ $0 }) { removeDirectory(path) }
    }
  }()
}
