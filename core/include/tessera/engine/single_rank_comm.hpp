// The communicator of an unsharded run: rank 0 of 1. All-reduce and broadcast
// leave the data as it is; all-gather and reduce-scatter copy input to output.
#pragma once

#include <tessera/abi.h>

namespace tessera {

ts_comm single_rank_comm();

}  // namespace tessera
