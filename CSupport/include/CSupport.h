/* Umbrella header of the C core: hashing, radix sort, the combiner table, blocks, the byte
 * shuffle, the allocator, key rows, the pieces of a many-way shuffle's read, the
 * decompression of input files, the compression of output files, delimited text, and the
 * sealing of a connection's frames. */
#ifndef CSUPPORT_H
#define CSUPPORT_H
#include "bs_error.h"
#include "bs_hash.h"
#include "bs_radix.h"
#include "bs_combiner.h"
#include "bs_block.h"
#include "bs_shuffle.h"
#include "bs_memory.h"
#include "bs_keyrow.h"
#include "bs_pieces.h"
#include "bs_decompress.h"
#include "bs_delimited.h"
#include "bs_compress.h"
#endif
