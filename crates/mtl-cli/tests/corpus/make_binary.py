"""Writes the malformed NPY and IDX files of the corpus (run from this folder).

Each file is broken in one way, named by its file name; the tests in
bad_input.rs check that reading it gives a typed error naming the file and
the problem.
"""
import gzip
import struct


def npy(header, body=b"", magic=b"\x93NUMPY", version=(1, 0)):
    h = header.encode("latin-1") if isinstance(header, str) else header
    if version[0] == 1:
        size = struct.pack("<H", len(h))
    else:
        size = struct.pack("<I", len(h))
    return magic + bytes(version) + size + h + body


def hdr(descr="<f4", fortran="False", shape="(2,)"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n" % (descr, fortran, shape)


two_f32 = struct.pack("<2f", 1.0, 2.0)
files = {
    "npy/bad_magic.npy": b"PK\x03\x04" + b"\x00" * 60,
    "npy/empty.npy": b"",
    "npy/too_short.npy": b"\x93NUMPY\x01",
    "npy/version_9.npy": npy(hdr(), two_f32, version=(9, 0)),
    "npy/header_past_end.npy": b"\x93NUMPY\x01\x00\xff\x00{'descr': '<f4'",
    "npy/header_not_utf8.npy": npy(b"{'descr': '\xff\xfe', }\n", two_f32),
    "npy/no_descr.npy": npy("{'fortran_order': False, 'shape': (2,), }\n", two_f32),
    "npy/no_shape.npy": npy("{'descr': '<f4', 'fortran_order': False, }\n", two_f32),
    "npy/big_endian.npy": npy(hdr(descr=">f4"), two_f32),
    "npy/dtype_float16.npy": npy(hdr(descr="<f2"), two_f32),
    "npy/dtype_object.npy": npy(hdr(descr="|O"), two_f32),
    "npy/fortran_order.npy": npy(hdr(fortran="True", shape="(2, 1)"), two_f32),
    "npy/bad_shape.npy": npy(hdr(shape="(2, x)"), two_f32),
    "npy/negative_shape.npy": npy(hdr(shape="(-2,)"), two_f32),
    "npy/data_short.npy": npy(hdr(shape="(3,)"), two_f32),
    "npy/data_long.npy": npy(hdr(shape="(1,)"), two_f32),
    "npy/shape_overflow.npy": npy(hdr(shape="(4611686018427387904, 8)"), two_f32),
    "npy/bytes_overflow.npy": npy(hdr(descr="<f8", shape="(4611686018427387904,)")),
    "idx/bad_magic.idx": b"\x01\x00\x08\x01\x00\x00\x00\x02\x05\x06",
    "idx/empty.idx": b"",
    "idx/unknown_type.idx": b"\x00\x00\x42\x01\x00\x00\x00\x02\x05\x06",
    "idx/truncated_dims.idx": b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00",
    "idx/data_short.idx": b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(5),
    "idx/data_long.idx": b"\x00\x00\x0d\x01\x00\x00\x00\x01" + bytes(8),
    "idx/bytes_overflow.idx": b"\x00\x00\x0e\x02\x80\x00\x00\x00\x80\x00\x00\x00",
    "idx/shape_overflow.idx": b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3,
    "idx/corrupt_gzip.idx.gz": gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04" + bytes(4))[:-9] + b"\x00" * 9,
    "idx/gzip_bad_magic.idx.gz": gzip.compress(b"\x07\x07\x08\x01\x00\x00\x00\x01\x05", mtime=0),
}


def npy_padded(descr, shape, body):
    """A well-formed NPY file, header padded to 64 bytes as numpy writes it."""
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    h = h + " " * (64 - (10 + len(h) + 1) % 64) + "\n"
    return npy(h, body)


# Good arrays for the memory-budget configurations (config/huge_class_count.toml).
files["arrays/x.npy"] = npy_padded("<f4", "(8, 2)", struct.pack("<16f", *[i / 8 for i in range(16)]))
files["arrays/label.npy"] = npy_padded("<i8", "(8,)", struct.pack("<8q", *[i % 2 for i in range(8)]))
for name, data in files.items():
    with open(name, "wb") as f:
        f.write(data)
