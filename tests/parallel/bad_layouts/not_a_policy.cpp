// expect: takes only TensorParallel, Pipeline, ZeroStage and Checkpoint policies
#include "plait/parallel/layout.hpp"
using Bad = plait::Layout<plait::TensorParallel<2>, int>;
constexpr int degree = Bad::tp::degree;
