# What plait needs on every machine: OpenMP, MPI, BLAS (OpenBLAS's cblas), Thrust (Debian's, OpenMP system),
# nlohmann-json, xxHash.
# Used both by the source tree and by the installed package config, so a downstream project gets the same targets.
include_guard(GLOBAL)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(MPI REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)
find_package(nlohmann_json 3 REQUIRED)  # hardware files of the planner, metrics lines of the trainer

if(NOT TARGET plait::blas)
  # Prefer OpenBLAS's OpenMP build: a BLAS call made inside an OpenMP region then runs on its own thread instead of
  # starting a second thread pool that fights the first (attention tiles call small GEMMs from parallel loops).
  find_library(PLAIT_OPENBLAS_LIBRARY NAMES openblas
    PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp NO_DEFAULT_PATH)
  if(NOT PLAIT_OPENBLAS_LIBRARY)
    find_library(PLAIT_OPENBLAS_LIBRARY NAMES openblas)
  endif()
  find_path(PLAIT_CBLAS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES openblas)
  if(NOT PLAIT_OPENBLAS_LIBRARY OR NOT PLAIT_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR "plait needs OpenBLAS (cblas.h and libopenblas). On Debian: apt-get install libopenblas-openmp-dev")
  endif()
  add_library(plait::blas INTERFACE IMPORTED)
  set_target_properties(plait::blas PROPERTIES
    INTERFACE_LINK_LIBRARIES ${PLAIT_OPENBLAS_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${PLAIT_CBLAS_INCLUDE_DIR})
endif()

find_path(PLAIT_THRUST_INCLUDE_DIR NAMES thrust/version.h)
if(NOT PLAIT_THRUST_INCLUDE_DIR)
  message(FATAL_ERROR "plait needs Thrust for its Host backend. On Debian: apt-get install libthrust-dev libcub-dev")
endif()

# xxHash (its header alone: checkpoints hash their blocks with XXH3, train/checkpoint.hpp).
find_path(PLAIT_XXHASH_INCLUDE_DIR NAMES xxhash.h)
if(NOT PLAIT_XXHASH_INCLUDE_DIR)
  message(FATAL_ERROR "plait needs xxHash's header for its checkpoints. On Debian: apt-get install libxxhash-dev")
endif()
