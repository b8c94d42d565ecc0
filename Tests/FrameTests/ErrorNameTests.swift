import CSupport
import Testing

/// `bs_error_name` names every CSupport error code, and only those.
@Suite struct ErrorNameTests {
  /// Every code with the constant that names it, in the order of their values.
  static var codes: [(code: bs_error, constant: String)] {
    [
      (BS_OK, "BS_OK"), (BS_EINVAL, "BS_EINVAL"), (BS_ENOMEM, "BS_ENOMEM"), (BS_ESHORT, "BS_ESHORT"),
      (BS_EMAGIC, "BS_EMAGIC"), (BS_EVERSION, "BS_EVERSION"), (BS_EHEADER, "BS_EHEADER"),
      (BS_ECODEC, "BS_ECODEC"), (BS_ELENGTH, "BS_ELENGTH"), (BS_EDECOMPRESS, "BS_EDECOMPRESS"),
      (BS_ECHECKSUM, "BS_ECHECKSUM"), (BS_EDSTSIZE, "BS_EDSTSIZE"), (BS_ECOMPRESS, "BS_ECOMPRESS"),
      (BS_EUNSUPPORTED, "BS_EUNSUPPORTED"),
    ]
  }

  static func name(_ code: Int32) -> String { String(cString: bs_error_name(code)) }

  /// The values are 0, -1, -2, … without gaps: Swift code and stored results depend on them.
  @Test func theCodesKeepTheirValues() {
    #expect(Self.codes.map(\.code.rawValue) == (0..<Int32(Self.codes.count)).map { -$0 })
  }

  @Test func everyCodeHasADistinctNameStartingWithItsConstant() {
    var seen: Set<String> = []
    for (code, constant) in Self.codes {
      let name = Self.name(code.rawValue)
      #expect(name.hasPrefix(constant + ": "), "\(constant) is named \"\(name)\"")
      #expect(name.count > constant.count + 2, "\(constant) has no meaning after its name")
      #expect(seen.insert(name).inserted, "\(constant) shares its name")
    }
  }

  @Test func theChecksumErrorSaysWhatDidNotMatch() {
    #expect(Self.name(BS_ECHECKSUM.rawValue) == "BS_ECHECKSUM: the payload checksum does not match")
  }

  /// The code after the last one, positive values (sizes) and extremes all get one generic
  /// name, which is none of the codes' names.
  @Test(arguments: [-Int32(14), -1000, 1, 42, .min, .max])
  func anUnknownCodeGetsTheGenericName(code: Int32) {
    #expect(Self.name(code) == "unknown CSupport error code")
    #expect(!Self.codes.contains { Self.name($0.code.rawValue) == Self.name(code) })
  }
}
