// expect: ZeroStage<K> takes K = 0, 1, 2 or 3
#include "plait/parallel/layout.hpp"
using Bad = plait::Layout<plait::ZeroStage<4>>;
constexpr int stage = Bad::zero::stage;
