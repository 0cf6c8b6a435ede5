// The Catch2 main of the MPI test executables: every rank runs every test case; a test fails if it fails on any
// rank. Ranks report with their number so that a failure on rank 3 says so.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Catch::Session session;
  // Only rank 0 prints passing summaries; every rank prints its own failures.
  int failed = session.applyCommandLine(argc, argv);
  if (failed == 0) failed = session.run();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed == 0 ? 0 : 1;
}
