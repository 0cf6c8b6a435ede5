# cmake -DMODE=install|subdirectory -DPLAIT_SOURCE_DIR=... -DPLAIT_BUILD_DIR=... -DWORK_DIR=... -DGENERATOR=...
#       -DCXX=... [-DPLAIT_CUDA=...] [-DEXAMPLE=downstream|01_layout_sweep] [-DPREFIX=...] -P downstream_test.cmake
# Builds and runs a project of its own (examples/EXAMPLE, default downstream) against plait as a user would get it:
#   install:      `cmake --install` of this build tree into WORK_DIR/prefix (or, with PREFIX, the install another
#                 test made there), then find_package(plait) from there;
#   subdirectory: add_subdirectory of plait's source tree.
# examples/downstream is built and its program run; examples/01_layout_sweep is built and its tests run with ctest.
# Everything happens under WORK_DIR, which belongs to this test alone (ctest runs tests in parallel).
cmake_minimum_required(VERSION 3.25)
foreach(var MODE PLAIT_SOURCE_DIR PLAIT_BUILD_DIR WORK_DIR GENERATOR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "downstream_test.cmake needs -D${var}=...")
  endif()
endforeach()

# Runs a command in WORK_DIR, shows its output, and stops the test with `what` if it fails.
function(step what)
  message(STATUS "${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (exit ${rc})")
  endif()
endfunction()

if(NOT DEFINED EXAMPLE)
  set(EXAMPLE downstream)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(project_args -S ${PLAIT_SOURCE_DIR}/examples/${EXAMPLE} -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)

if(MODE STREQUAL "install")
  if(DEFINED PREFIX)  # installed by the test that owns it (a CTest fixture)
    set(prefix ${PREFIX})
  else()
    set(prefix ${WORK_DIR}/prefix)
    step("install plait" ${CMAKE_COMMAND} --install ${PLAIT_BUILD_DIR} --prefix ${prefix})
  endif()
  foreach(f include/plait/core/tensor.hpp include/plait/kernels/attention.hpp include/plait/testing/catch2.hpp
            include/plait/testing/layout_equivalence.hpp lib/cmake/plait/plaitConfig.cmake
            lib/cmake/plait/plaitConfigVersion.cmake lib/cmake/plait/plaitTargets.cmake)
    if(NOT EXISTS ${prefix}/${f})
      message(FATAL_ERROR "the install has no ${f}")
    endif()
  endforeach()
  # An installed package must not point back into the source or build tree.
  file(GLOB_RECURSE package_files ${prefix}/lib/cmake/plait/*.cmake)
  foreach(f ${package_files})
    file(READ ${f} text)
    foreach(tree ${PLAIT_SOURCE_DIR} ${PLAIT_BUILD_DIR})
      string(FIND "${text}" "${tree}/" at)
      if(NOT at EQUAL -1)
        message(FATAL_ERROR "${f} refers to ${tree}: the installed package depends on the tree it was built from")
      endif()
    endforeach()
  endforeach()
  step("configure the downstream project with find_package" ${CMAKE_COMMAND} ${project_args}
       -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  # It must have found this install, not another plait on the machine.
  file(STRINGS ${WORK_DIR}/build/CMakeCache.txt plait_dir REGEX "^plait_DIR:")
  if(NOT plait_dir MATCHES "${prefix}/")
    message(FATAL_ERROR "find_package(plait) did not find the install under ${prefix}: ${plait_dir}")
  endif()
elseif(MODE STREQUAL "subdirectory")
  if(DEFINED PLAIT_CUDA)  # the same choice as the build that runs this test
    list(APPEND project_args -DPLAIT_CUDA=${PLAIT_CUDA})
  endif()
  step("configure the downstream project with add_subdirectory" ${CMAKE_COMMAND} ${project_args}
       -DPLAIT_SOURCE_DIR=${PLAIT_SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be install or subdirectory, got '${MODE}'")
endif()

if(EXAMPLE STREQUAL "downstream")
  step("build the downstream project" ${CMAKE_COMMAND} --build ${WORK_DIR}/build --target downstream)
  step("run the downstream program" ${WORK_DIR}/build/downstream)
else()
  step("build ${EXAMPLE}" ${CMAKE_COMMAND} --build ${WORK_DIR}/build -j 2)
  step("run ${EXAMPLE}'s tests" ${CMAKE_CTEST_COMMAND} --test-dir ${WORK_DIR}/build --output-on-failure --no-tests=error)
endif()
