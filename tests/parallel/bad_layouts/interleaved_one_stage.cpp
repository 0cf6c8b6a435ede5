// expect: Interleaved<V> spreads V model chunks over the pipeline stages
#include "plait/parallel/layout.hpp"
using Bad = plait::Layout<plait::Pipeline<1, plait::Interleaved<2>>>;
constexpr int stages = Bad::pp::stages;
