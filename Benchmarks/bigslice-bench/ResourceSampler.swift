import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Watches this process while a job runs: the files created under a directory tree (by
/// inotify, so short-lived files count too) and the most descriptors open at once (by counting
/// `/proc/self/fd` about every 5 ms on a thread of its own, so a peak shorter than that can be
/// missed). The sampling takes a little CPU beside the job, more with more descriptors open.
final class ResourceSampler: Sendable {
  /// What a sampler saw between `start()` and `stop()`.
  struct Sample {
    /// Files (not directories) created under the root.
    var filesCreated: Int
    /// Whether the kernel dropped create events (its queue overflowed): `filesCreated` is then
    /// a lower bound.
    var overflowed: Bool
    /// Descriptors open before sampling began.
    var idleDescriptors: Int
    /// The most descriptors seen open at once.
    var peakDescriptors: Int
  }

  private let watch: Mutex<CreateWatch>
  private let peak = Atomic<Int>(0)
  private let stopping = Atomic<Bool>(false)
  private let stopped = DispatchSemaphore(value: 0)
  private let idle: Int

  /// A sampler watching the directory `root` and every directory created under it.
  /// - Throws: `ScaleError.cannotWatch` when inotify cannot watch `root`.
  init(root: String) throws {
    watch = Mutex(try CreateWatch(root: root))
    idle = openDescriptors()
  }

  /// Starts sampling on a thread of its own.
  func start() {
    peak.store(idle, ordering: .relaxed)
    Thread {
      while !self.stopping.load(ordering: .relaxed) {
        self.watch.withLock { $0.drain() }
        self.sampleDescriptors()
        usleep(5000)
      }
      self.stopped.signal()
    }.start()
  }

  /// Stops the sampling thread, reads the events still queued and returns what was seen.
  func stop() -> Sample {
    stopping.store(true, ordering: .relaxed)
    stopped.wait()
    sampleDescriptors()
    return watch.withLock {
      $0.drain()
      return Sample(
        filesCreated: $0.files, overflowed: $0.overflowed, idleDescriptors: idle,
        peakDescriptors: peak.load(ordering: .relaxed))
    }
  }

  /// Raises the peak to the descriptors open now. One thread at a time calls it (the sampling
  /// thread, then `stop()` once that thread has ended).
  private func sampleDescriptors() {
    let now = openDescriptors()
    if now > peak.load(ordering: .relaxed) { peak.store(now, ordering: .relaxed) }
  }
}

/// The descriptors this process has open, from `/proc/self/fd` (not counting the one that
/// reads it); 0 where there is no `/proc`.
func openDescriptors() -> Int {
  guard let dir = opendir("/proc/self/fd") else { return 0 }
  defer { closedir(dir) }
  var count = 0
  while let entry = readdir(dir) {
    if withUnsafeBytes(of: entry.pointee.d_name, { $0[0] }) != UInt8(ascii: ".") { count += 1 }
  }
  return count - 1
}

/// Counts the files created under a directory tree with inotify. Each directory created in the
/// tree is watched as soon as its event is read and then listed, so that files made in it
/// before its watch began count too; a file both listed and reported by an event counts once.
struct CreateWatch: ~Copyable {
  private let fd: Int32
  /// The path of each watched directory, by watch descriptor.
  private var directories: [Int32: String] = [:]
  /// Names found by listing a directory just after its watch began, by watch descriptor:
  /// an event for one of them is one already counted.
  private var listed: [Int32: Set<String>] = [:]
  /// Files created so far.
  private(set) var files = 0
  /// Whether the kernel reported its event queue overflowing (events were lost).
  private(set) var overflowed = false

  /// A watch on `root` (which should be empty: files already there are counted as created).
  /// - Throws: `ScaleError.cannotWatch` when inotify cannot be set up or cannot watch `root`.
  init(root: String) throws {
    let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
    guard fd >= 0 else { throw ScaleError.cannotWatch(path: root, errno: errno) }
    // Tried before `self` is whole, so that a failure does not run `deinit` too.
    guard inotify_add_watch(fd, root, UInt32(IN_CREATE)) >= 0 else {
      let error = errno
      close(fd)
      throw ScaleError.cannotWatch(path: root, errno: error)
    }
    self.fd = fd
    add(directory: root)
  }

  deinit { close(fd) }

  /// Reads every queued event, counting the files created and watching new directories.
  mutating func drain() {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    defer { buffer.deallocate() }
    while true {
      let n = read(fd, buffer.baseAddress, buffer.count)
      guard n > 0 else { return }  // EAGAIN: nothing queued now
      var offset = 0
      // struct inotify_event: wd, mask, cookie, len (4 bytes each), then len bytes of name
      // padded with NULs.
      while offset + 16 <= n {
        let wd = buffer.loadUnaligned(fromByteOffset: offset, as: Int32.self)
        let mask = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
        let length = Int(buffer.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
        let name = String(
          decoding: buffer[offset + 16..<offset + 16 + length].prefix { $0 != 0 }, as: UTF8.self)
        offset += 16 + length
        if mask & UInt32(IN_Q_OVERFLOW) != 0 { overflowed = true }
        if mask & UInt32(IN_IGNORED) != 0 {
          directories[wd] = nil
          listed[wd] = nil
        }
        guard mask & UInt32(IN_CREATE) != 0, let parent = directories[wd], !name.isEmpty else { continue }
        if mask & UInt32(IN_ISDIR) != 0 {
          add(directory: parent + "/" + name)
        } else if listed[wd]?.remove(name) == nil {
          files += 1
        }
      }
    }
  }

  /// Watches `path`, then lists it: its files count as created, its directories are added too.
  /// A directory already watched is left as it is. Returns false when `path` cannot be watched
  /// (a directory removed already went with what it held).
  @discardableResult
  private mutating func add(directory path: String) -> Bool {
    let wd = inotify_add_watch(fd, path, UInt32(IN_CREATE))
    guard wd >= 0 else { return false }
    guard directories[wd] == nil else { return true }
    directories[wd] = path
    guard let dir = opendir(path) else { return true }
    defer { closedir(dir) }
    var subdirectories: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name == "." || name == ".." { continue }
      if Int(entry.pointee.d_type) == DT_DIR {
        subdirectories.append(path + "/" + name)
      } else {
        listed[wd, default: []].insert(name)
        files += 1
      }
    }
    for subdirectory in subdirectories { add(directory: subdirectory) }
    return true
  }
}
