// Preemption: a cluster that takes the machines back sends SIGTERM (Slurm, Kubernetes) or a signal the job asked for
// (SIGUSR1, `sbatch --signal=USR1@120`) some time before it kills the job. plait-train notes the signal, finishes
// the step it is in on every rank, saves, and exits 0; a second signal ends the process at once.
// Why a flag and not a save in the handler: a save is a collective, and the signal reaches one rank (or each rank at
// another moment). Each step the ranks OR their flags over the world's control communicator (one integer), so all
// of them stop after the same step.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>

#include "plait/comm/communicator.hpp"

namespace trainer {

namespace detail {
inline volatile std::sig_atomic_t preemption_signal = 0;  // the first signal received, 0: none

inline void on_preemption_signal(int signal) {
  if (preemption_signal != 0) _exit(128 + signal);  // the second: the user (or the cluster) means it
  preemption_signal = signal;
}
}  // namespace detail

// Routes SIGTERM and SIGUSR1 to the flag. Called once per process, before the first step.
inline void catch_preemption_signals() {
  struct sigaction action {};
  action.sa_handler = detail::on_preemption_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a write or a wait the signal lands in goes on
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

// The signal this rank received (0: none).
inline int preemption_signal() { return detail::preemption_signal; }

inline const char* signal_name(int signal) {
  return signal == SIGTERM ? "SIGTERM" : signal == SIGUSR1 ? "SIGUSR1" : "a signal";
}

// Whether any rank of `world` received a preemption signal, and the lowest-numbered such rank and its signal: a
// collective every rank calls once per step, at the same point.
template <class Comm>
bool preempted(Comm& world, int* rank, int* signal) {
  // Encoded as rank x 64 + signal, negated under max: the lowest rank with a signal wins.
  std::int64_t mine = preemption_signal() != 0 ? -(static_cast<std::int64_t>(world.rank()) * 64 + preemption_signal())
                                               : std::int64_t{-1} << 40;
  world.control().all_reduce(&mine, 1, plait::comm::ReduceOp::max);
  if (mine == std::int64_t{-1} << 40) return false;
  *rank = static_cast<int>(-mine / 64);
  *signal = static_cast<int>(-mine % 64);
  return true;
}

}  // namespace trainer
