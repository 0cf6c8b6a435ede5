#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything scripts/gpu-check.sh runs on an H100/H200, and gathers it into one
# folder, gpu-bundle/ at the repository's root, packed as gpu-bundle.tar.xz (about 14 MiB: what travels to the GPU
# machine, whose copies are limited to 64 MiB; git ignores both).
#   bin/   the GPU binaries, built for sm_90 (cmake preset gpu, build/gpu), stripped
#   lib/   the shared libraries they need that a GPU machine may lack (Open MPI, OpenBLAS, hwloc, ...); not the CUDA
#          libraries (cuBLASLt and NCCL are hundreds of MB: gpu-check.sh finds the GPU machine's own)
#   ompi/  Open MPI's components and data files, laid out under a prefix of its own (OPAL_PREFIX), so a process
#          runs as an MPI singleton there without an Open MPI installation
# Usage: scripts/gpu-build.sh   (then, on the GPU machine: scripts/gpu-check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
cmake --preset gpu >/dev/null
targets=(plait_cuda_tests plait_cuda_model_step_tests plait-train plait-bench-cuda-attention plait-bench-cuda-memory)
cmake --build --preset gpu -j "$jobs" --target "${targets[@]}"

bundle=gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/ompi"
binaries=(build/gpu/tests/cuda/plait_cuda_tests build/gpu/tests/cuda/plait_cuda_model_step_tests
          build/gpu/examples/trainer/plait-train build/gpu/bench/cuda/plait-bench-cuda-attention
          build/gpu/bench/cuda/plait-bench-cuda-memory)
for b in "${binaries[@]}"; do
  cp "$b" "$bundle/bin/"
  strip --strip-unneeded "$bundle/bin/$(basename "$b")"
done

# Shared libraries outside the C runtime, the C++ runtime and CUDA's own (the GPU machine has those).
system='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libnccl)'
for b in "$bundle"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $system ]] && continue
  cp -L "$path" "$bundle/lib/$name"
done

# Open MPI's runtime pieces, relocated: OPAL_PREFIX=<bundle>/ompi makes it look for its components in
# <prefix>/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 and its help texts in <prefix>/share/openmpi.
prefix=$(ompi_info --path prefix --parsable | cut -d: -f3)
pkglib=$(ompi_info --path pkglibdir --parsable | cut -d: -f3)
pkgdata=$(ompi_info --path pkgdatadir --parsable | cut -d: -f3)
mkdir -p "$bundle/ompi/${pkglib#"$prefix"/}" "$bundle/ompi/${pkgdata#"$prefix"/}"
cp -L "$pkglib"/*.so "$bundle/ompi/${pkglib#"$prefix"/}/"
cp -rL "$pkgdata"/. "$bundle/ompi/${pkgdata#"$prefix"/}/"
# The components' own dependencies (hwloc, libevent, pmix, ...), where the binaries did not already pull them in.
for so in "$bundle"/ompi/"${pkglib#"$prefix"/}"/*.so; do
  ldd "$so" | awk '$3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $system ]] && continue
  [[ -e $bundle/lib/$name ]] || cp -L "$path" "$bundle/lib/$name"
done

git rev-parse HEAD > "$bundle/COMMIT"
tar -cJf "$bundle.tar.xz" "$bundle"
size=$(du -sm "$bundle.tar.xz" | cut -f1)
echo "plait: $bundle/ holds $(ls "$bundle/bin" | wc -l) binaries and $(ls "$bundle/lib" | wc -l) libraries" \
     "($(du -sm "$bundle" | cut -f1) MiB; $bundle.tar.xz ${size} MiB), built at $(cat "$bundle/COMMIT")"
((size < 60)) || { echo "plait: $bundle.tar.xz is over 60 MiB: it will not travel to the GPU machine" >&2; exit 1; }
