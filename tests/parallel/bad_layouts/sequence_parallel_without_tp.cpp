// expect: SequenceParallel splits the sequence over the tensor-parallel group
#include "plait/parallel/layout.hpp"
using Bad = plait::Layout<plait::TensorParallel<1, plait::SequenceParallel>>;
constexpr int degree = Bad::tp::degree;
