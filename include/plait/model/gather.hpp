// gather_full_tensors: the full, unsplit value of every tensor of a model split over a process grid, in the
// single-rank model's declaration order (tensor_names.hpp). The sharded state gives this rank's parameters whole
// (gathered over DP under ZeRO-3); each split tensor is gathered over TP by the slice this rank holds; each pipeline
// stage then broadcasts its tensors to the others, in stage order. A collective: every rank calls it and every rank
// gets the result. For tests, checkpoints' cross-checks and exports, not for training steps. A tensor over a padded
// vocabulary comes without its padding rows: (valid_rows, cols), as the unpadded model holds it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "plait/comm/process_grid.hpp"
#include "plait/model/parameters.hpp"
#include "plait/model/tensor_names.hpp"

namespace plait::model {

namespace detail {

// The full tensor p, its padding rows left out, from every TP rank's slice of it; `local` holds this rank's
// parameters (host memory).
template <class T, class C>
std::vector<double> gather_over_tp(const ParameterInfo& p, const T* local, comm::ProcessGrid<C>& grid) {
  const int tp = grid.tp_size();
  const std::int64_t rows = p.rows(), cols = p.cols();
  std::vector<double> full(static_cast<std::size_t>(p.full_numel()));
  std::vector<double> mine(static_cast<std::size_t>(p.numel())), every(static_cast<std::size_t>(p.numel() * tp));
  for (std::int64_t i = 0; i < p.numel(); ++i) mine[static_cast<std::size_t>(i)] = static_cast<double>(local[p.offset + i]);
  std::vector<std::int64_t> where{p.slice.row_begin, p.slice.col_begin}, wheres(static_cast<std::size_t>(2 * tp));
  grid.tp().control().all_gather(mine.data(), every.data(), p.numel());
  grid.tp().control().all_gather(where.data(), wheres.data(), 2);
  for (int r = 0; r < tp; ++r)
    for (std::int64_t i = 0; i < rows && wheres[2 * r] + i < p.slice.valid_rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        full[static_cast<std::size_t>((wheres[2 * r] + i) * p.slice.full_cols + wheres[2 * r + 1] + j)] =
            every[static_cast<std::size_t>(r * p.numel() + i * cols + j)];
  return full;
}

}  // namespace detail

template <class State, class C>
std::vector<std::pair<std::string, std::vector<double>>> gather_full_tensors(const ParameterTable& parameters,
                                                                             State& state, comm::ProcessGrid<C>& grid,
                                                                             const TensorTable& tensors, int stage) {
  std::vector<typename State::T> local(static_cast<std::size_t>(parameters.size()));  // host memory
  state.gather(local.data());
  std::map<std::string, std::vector<double>> mine;
  for (const ParameterInfo& p : parameters.infos()) mine[p.name] = detail::gather_over_tp(p, local.data(), grid);
  const int stages = grid.pp_size();
  for (int from = 0; stages > 1 && from < stages; ++from) {  // each stage broadcasts its tensors, in stage order
    std::vector<std::string> names;
    if (from == stage)
      for (const auto& [name, values] : mine) names.push_back(name);
    std::int64_t count = static_cast<std::int64_t>(names.size());
    grid.pp().control().broadcast(&count, 1, from);
    for (std::int64_t i = 0; i < count; ++i) {
      std::int64_t code = 0, size = 0;
      if (from == stage) code = tensors.code(names[static_cast<std::size_t>(i)]);
      grid.pp().control().broadcast(&code, 1, from);
      const std::string name = tensors.name(code);
      if (from == stage) size = static_cast<std::int64_t>(mine[name].size());
      grid.pp().control().broadcast(&size, 1, from);
      std::vector<double> values = from == stage ? mine[name] : std::vector<double>(static_cast<std::size_t>(size));
      grid.pp().control().broadcast(values.data(), size, from);
      mine[name] = std::move(values);
    }
  }
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (std::int64_t code = 0; code < tensors.count(); ++code) {
    const std::string name = tensors.name(code);
    if (auto it = mine.find(name); it != mine.end()) out.emplace_back(name, std::move(it->second));
  }
  return out;
}

}  // namespace plait::model
