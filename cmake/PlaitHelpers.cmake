# CMake helpers for plait's own tests and for downstream projects: MPI tests registered under mpirun.
include_guard(GLOBAL)

# plait_add_mpi_test(NAME <name> TARGET <target> NP <ranks> [ARGS ...])
# Registers "<name> [np=<ranks>]": the target run under mpirun with oversubscription (ranks may exceed cores) and
# yielding when idle, so that a CPU with 2 cores can stand in for 8 GPUs without ranks spinning on each other.
function(plait_add_mpi_test)
  cmake_parse_arguments(ARG "" "NAME;TARGET;NP" "ARGS" ${ARGN})
  set(root_flag "")
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(uid STREQUAL "0")
    set(root_flag --allow-run-as-root)
  endif()
  add_test(NAME "${ARG_NAME} [np=${ARG_NP}]"
    COMMAND ${MPIEXEC_EXECUTABLE} ${root_flag} ${MPIEXEC_NUMPROC_FLAG} ${ARG_NP} --oversubscribe
            --mca mpi_yield_when_idle 1 --bind-to none
            $<TARGET_FILE:${ARG_TARGET}> ${ARG_ARGS})
  set_tests_properties("${ARG_NAME} [np=${ARG_NP}]" PROPERTIES PROCESSORS ${ARG_NP}
    ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endfunction()
