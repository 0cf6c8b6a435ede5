// expect: given TensorParallel twice
#include "plait/parallel/layout.hpp"
using Bad = plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>, plait::TensorParallel<4>>;
constexpr int degree = Bad::tp::degree;
