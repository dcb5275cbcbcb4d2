// Launch configuration shared by the grid-stride CUDA kernels.
#pragma once

#include <algorithm>
#include <cstdint>

namespace moegs {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

// Blocks of a grid-stride loop over n > 0 items.
inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

}  // namespace moegs
