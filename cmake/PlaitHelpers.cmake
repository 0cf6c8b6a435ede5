# CMake helpers for plait's own tests and for downstream projects: MPI tests registered under mpirun.
include_guard(GLOBAL)

# plait_add_output_test(NAME <name> EXPECT <regex> [EXIT zero|nonzero] COMMAND <command> [<arg>...])
# Registers a test that passes only when the command's output matches EXPECT (a CMake regex, as CTest's
# PASS_REGULAR_EXPRESSION) and its exit status is 0, or, with EXIT nonzero, is not 0 (a refusal that must say why).
# PASS_REGULAR_EXPRESSION alone ignores the exit status; this counts both (PlaitExpectOutput.cmake, found beside this
# file: a variable set when this file is included would be out of scope in a project that add_subdirectory'd plait).
function(plait_add_output_test)
  cmake_parse_arguments(ARG "" "NAME;EXPECT;EXIT" "COMMAND" ${ARGN})
  if(NOT ARG_EXIT)
    set(ARG_EXIT zero)
  endif()
  add_test(NAME "${ARG_NAME}"
    COMMAND ${CMAKE_COMMAND} "-DEXPECT=${ARG_EXPECT}" -DEXIT=${ARG_EXIT}
            -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/PlaitExpectOutput.cmake -- ${ARG_COMMAND})
endfunction()

# plait_add_mpi_test(NAME <name> TARGET <target> NP <ranks> [ARGS ...] [EXPECT <regex> [EXIT zero|nonzero]])
# Registers "<name> [np=<ranks>]": the target run under mpirun with oversubscription (ranks may exceed cores) and
# yielding when idle, so that a CPU with 2 cores can stand in for 8 GPUs without ranks spinning on each other.
# With EXPECT, the output must also match the regex (plait_add_output_test); the exit status counts either way.
function(plait_add_mpi_test)
  cmake_parse_arguments(ARG "" "NAME;TARGET;NP;EXPECT;EXIT" "ARGS" ${ARGN})
  set(root_flag "")
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(uid STREQUAL "0")
    set(root_flag --allow-run-as-root)
  endif()
  set(command ${MPIEXEC_EXECUTABLE} ${root_flag} ${MPIEXEC_NUMPROC_FLAG} ${ARG_NP} --oversubscribe
              --mca mpi_yield_when_idle 1 --bind-to none $<TARGET_FILE:${ARG_TARGET}> ${ARG_ARGS})
  if(DEFINED ARG_EXPECT)
    if(NOT ARG_EXIT)
      set(ARG_EXIT zero)
    endif()
    plait_add_output_test(NAME "${ARG_NAME} [np=${ARG_NP}]" EXPECT "${ARG_EXPECT}" EXIT ${ARG_EXIT} COMMAND ${command})
  else()
    add_test(NAME "${ARG_NAME} [np=${ARG_NP}]" COMMAND ${command})
  endif()
  set(environment "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
  # Under AddressSanitizer, without its leak check: Open MPI keeps allocations past MPI_Finalize in its plugins
  # (mca_*.so), which it unloads then, so their stacks end in "<unknown module>" and no suppression can name them.
  if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=[a-z,]*address")
    list(APPEND environment "ASAN_OPTIONS=detect_leaks=0")
  endif()
  set_tests_properties("${ARG_NAME} [np=${ARG_NP}]" PROPERTIES PROCESSORS ${ARG_NP} ENVIRONMENT "${environment}")
endfunction()

# plait_add_layout_sweep(NAME <target> SOURCES <files...> [WORLD_SIZES <n...>] [LIBRARIES <targets...>])
# plait_add_layout_sweep(NAME <target> LAYOUTS <type...> MODEL <header> [PROBLEM <function>] [DATA_PARALLEL <d>]
#                        [LAYOUTS_PER_UNIT <k>] [PRECISIONS double float] [WORLD_SIZES <n...>] [LIBRARIES <targets...>])
# A layout sweep: one MPI test executable with a main that runs every test on every rank and fails if any rank fails.
#
# With SOURCES: Catch2 test sources (TEMPLATE_LIST_TEST_CASE over lists of plait::Layout types, say), registered as
# "<target> [np=N]" for each world size (default 1 2 4 8). The sizes reach the sources as the macro
# PLAIT_SWEEP_WORLD_SIZES (1,2,4,8), so that a test that cannot run at one size can check that it runs at another.
# Split the layouts over several sources so that no translation unit compiles for minutes.
#
# With LAYOUTS: the test sources are generated. Each layout is a C++ type spelled in full
# ("plait::Layout<plait::TensorParallel<2>, plait::ZeroStage<1>>"); MODEL is a header that defines PROBLEM (default
# layout_sweep_problem), a function `plait::testing::Problem PROBLEM()` giving the model, the training settings and
# the steps. Every LAYOUTS_PER_UNIT layouts (default 2) make one generated translation unit under
# <build dir>/<target>_units/, and each layout one Catch2 case, "<target>: <type> equals one rank", that compares it
# with one rank in each of PRECISIONS (default double float) with plait/testing/catch2.hpp. Without WORLD_SIZES, each
# layout runs at its own world size, TP x PP x DATA_PARALLEL (default 2), with TP and PP read from TensorParallel<N>
# and Pipeline<S> in the type's text; the case is tagged [np=N] and "<target> [np=N]" runs the cases of that size.
# A layout named through an alias (no TensorParallel<N> or Pipeline<S> in its text) needs WORLD_SIZES: then every
# case runs at every size, skipped where it does not fit (and failed if it fits none). Needs Catch2 2.x.
function(plait_add_layout_sweep)
  cmake_parse_arguments(ARG "" "NAME;MODEL;PROBLEM;DATA_PARALLEL;LAYOUTS_PER_UNIT"
                        "SOURCES;LAYOUTS;PRECISIONS;WORLD_SIZES;LIBRARIES" ${ARGN})
  if(NOT TARGET Catch2::Catch2)
    find_package(Catch2 2 REQUIRED)
  endif()
  set(tagged_sizes "")  # with LAYOUTS and no WORLD_SIZES: the sizes, each running the cases tagged [np=N]
  if(ARG_LAYOUTS)
    if(ARG_SOURCES OR NOT ARG_MODEL)
      message(FATAL_ERROR "plait_add_layout_sweep(NAME ${ARG_NAME}): LAYOUTS needs MODEL <header> and no SOURCES "
                          "(make a second sweep for hand-written sources)")
    endif()
    _plait_generate_layout_units()  # sets ARG_SOURCES and tagged_sizes
  endif()
  if(NOT ARG_WORLD_SIZES)
    if(tagged_sizes)
      set(ARG_WORLD_SIZES ${tagged_sizes})
    else()
      set(ARG_WORLD_SIZES 1 2 4 8)
    endif()
  endif()
  set(main ${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}_mpi_main.cpp)
  file(CONFIGURE OUTPUT ${main} CONTENT [[
// Generated by plait_add_layout_sweep: every rank runs every test case; a test fails if it fails on any rank.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>
#include <catch2/catch.hpp>
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Catch::Session session;
  int failed = session.applyCommandLine(argc, argv);
  if (failed == 0) failed = session.run();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed == 0 ? 0 : 1;
}
]])
  # The runner's own speed does not matter, and unoptimized it compiles in half the time (10 s against 21 s on 2 cores).
  set_source_files_properties(${main} PROPERTIES COMPILE_OPTIONS "$<$<CXX_COMPILER_ID:GNU,Clang>:-O0>")
  add_executable(${ARG_NAME} ${ARG_SOURCES} ${main})
  target_link_libraries(${ARG_NAME} PRIVATE plait::plait Catch2::Catch2 ${ARG_LIBRARIES})
  # The world sizes the sweep runs at, so that a test skipped at one size can assert that it runs at another.
  string(REPLACE ";" "," sizes "${ARG_WORLD_SIZES}")
  target_compile_definitions(${ARG_NAME} PRIVATE PLAIT_SWEEP_WORLD_SIZES=${sizes})
  set_property(GLOBAL APPEND PROPERTY PLAIT_CATCH2_EXECUTABLES ${ARG_NAME})
  foreach(np ${ARG_WORLD_SIZES})
    # -w NoTests: a test filter that matches nothing is a failure, not a pass
    set(filter "")
    if(tagged_sizes)
      set(filter "[np=${np}]")
    endif()
    plait_add_mpi_test(NAME "${ARG_NAME}" TARGET ${ARG_NAME} NP ${np} ARGS --use-colour no -w NoTests ${filter})
  endforeach()
endfunction()

# plait_add_layout_sweep's generated sources, in its scope: one Catch2 case per layout of ARG_LAYOUTS, a few per unit.
macro(_plait_generate_layout_units)
  if(NOT ARG_PROBLEM)
    set(ARG_PROBLEM layout_sweep_problem)
  endif()
  if(NOT ARG_DATA_PARALLEL)
    set(ARG_DATA_PARALLEL 2)
  endif()
  if(NOT ARG_LAYOUTS_PER_UNIT)
    set(ARG_LAYOUTS_PER_UNIT 2)
  endif()
  if(NOT ARG_PRECISIONS)
    set(ARG_PRECISIONS double float)
  endif()
  cmake_path(ABSOLUTE_PATH ARG_MODEL BASE_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR} NORMALIZE OUTPUT_VARIABLE model_header)
  set(unit_dir ${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}_units)
  set(ARG_SOURCES "")
  set(unit_text "")
  set(in_unit 0)
  set(unit 0)
  list(LENGTH ARG_LAYOUTS layout_count)
  set(index 0)
  foreach(layout IN LISTS ARG_LAYOUTS)
    math(EXPR index "${index} + 1")
    # The world size this layout needs: TP x PP from the type's text, times the data-parallel degree.
    set(sizes "")
    if(ARG_WORLD_SIZES)
      string(REPLACE ";" "," sizes "${ARG_WORLD_SIZES}")
      set(tag "")
    else()
      set(tp 1)
      set(pp 1)
      if(layout MATCHES "TensorParallel<[ ]*([0-9]+)")
        set(tp ${CMAKE_MATCH_1})
      endif()
      if(layout MATCHES "Pipeline<[ ]*([0-9]+)")
        set(pp ${CMAKE_MATCH_1})
      endif()
      math(EXPR np "${tp} * ${pp} * ${ARG_DATA_PARALLEL}")
      list(APPEND tagged_sizes ${np})
      set(sizes ${np})
      set(tag "[np=${np}]")
    endif()
    # A Catch2 name holds no ',' (a test spec separator): "Layout<TensorParallel<2 SequenceParallel> ZeroStage<1>>".
    string(REPLACE "plait::parallel::" "" short "${layout}")
    string(REPLACE "plait::" "" short "${short}")
    string(REGEX REPLACE "[ ]*,[ ]*" " " short "${short}")
    string(STRIP "${short}" short)
    set(checks "")
    foreach(precision IN LISTS ARG_PRECISIONS)
      string(APPEND checks "  ::plait::testing::check_layout<Layout, ${precision}, &${ARG_PROBLEM}>({${sizes}});\n")
    endforeach()
    string(APPEND unit_text "\n// ${index} of ${layout_count}\nTEST_CASE(\"${ARG_NAME}: ${short} equals one rank\", "
           "\"[sweep]${tag}\") {\n  using Layout = ${layout};\n${checks}}\n")
    math(EXPR in_unit "${in_unit} + 1")
    if(in_unit EQUAL ARG_LAYOUTS_PER_UNIT OR index EQUAL layout_count)
      set(file ${unit_dir}/unit_${unit}.cpp)
      string(CONCAT text "// Generated by plait_add_layout_sweep(NAME ${ARG_NAME}): a few of its layouts, each compared with one "
               "rank.\n#include \"${model_header}\"\n\n#include <plait/testing/catch2.hpp>\n${unit_text}")
      file(CONFIGURE OUTPUT ${file} CONTENT "${text}" @ONLY)  # rewritten only when it changes
      list(APPEND ARG_SOURCES ${file})
      math(EXPR unit "${unit} + 1")
      set(in_unit 0)
      set(unit_text "")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES tagged_sizes)
  list(SORT tagged_sizes COMPARE NATURAL)
endmacro()
