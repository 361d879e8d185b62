"""A Display P3 ICC profile, written here (Pillow can only make sRGB, LAB and XYZ ones).

ICC v2 matrix/TRC display profile: Display P3's primaries adapted to the D50 connection space
(the colorants Apple's own profile lists), and a 2.2 gamma curve standing in for P3's
sRGB-shaped one. Enough to check that a phone photo's colour space reaches every output.
"""

from __future__ import annotations

import struct

# Display P3 colorants, XYZ under D50.
_COLORANTS = {
    b"rXYZ": (0.515121, 0.241196, -0.001053),
    b"gXYZ": (0.291977, 0.692245, 0.041885),
    b"bXYZ": (0.157104, 0.066574, 0.784073),
}
_D50 = (0.964203, 1.0, 0.824905)


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15f16(x) + _s15f16(y) + _s15f16(z)


def _text_description(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    # ASCII part, then empty Unicode and ScriptCode parts (ICC.1:2001-04, 6.5.17).
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + bytes(4 + 4 + 2 + 1 + 67)


def display_p3_profile() -> bytes:
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256))
    tags = [
        (b"desc", _text_description("Display P3")),
        (b"wtpt", _xyz(*_D50)),
        *((sig, _xyz(*xyz)) for sig, xyz in _COLORANTS.items()),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
        (b"cprt", b"text\0\0\0\0No copyright, test data\0"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)  # each tag starts on a 4-byte boundary
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"  # preferred CMM
        + bytes((2, 0x10, 0, 0))  # version 2.1
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 11, 27, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8 + 4)  # platform, flags, manufacturer, model, attributes, intent
        + b"".join(_s15f16(v) for v in _D50)  # the connection space's illuminant
        + bytes(4 + 16 + 28)  # creator, profile id, reserved
    )
    assert len(header) == 128
    return header + table + data
