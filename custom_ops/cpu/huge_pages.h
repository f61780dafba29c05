// Backing a weight read in place with transparent huge pages.
//
// The kernels read W where ORT placed it, across rows (the plain view) or as a stream that a
// 4 KiB page ends every 1024 floats, while MLAS reads its own packed copy. With 4 KiB pages each
// new page costs a TLB miss, and under a hypervisor a miss walks two page tables. Measured here
// (Zen 4 guest, one thread, alternated in one process, W collapsed / W in 4 KiB pages):
// K=768, N=32000, M=1, transposed 0.68-0.87 in different runs; plain 768 x 32000, M=16, 0.85
// (AVX2) and 0.87 (AVX-512); M=256, 768 x 3072, 0.98-0.99 (benchmarks/results/huge_pages.md).
// End to end (a 2-layer tied Llama stored inline) a few percent at most (huge_pages_e2e.md).
//
// Linux (6.1 and later) collapses a range into huge pages on request (MADV_COLLAPSE): only the
// 2 MiB-aligned blocks wholly inside W, so no memory outside W changes and the resident size
// stays the same (W's pages are all present). The content never changes, so this cannot fail
// a call: a refusal (no MADV_COLLAPSE, no free huge page, a file mapping the kernel will not
// collapse: external data ORT maps is page cache, which Linux collapses only when built with
// CONFIG_READ_ONLY_THP_FOR_FS) leaves W as it was.
//
// Collapsing copies W once, about 3 GiB/s here; but on this machine about one session in two
// finds the huge pages' memory not yet backed by the hypervisor, and then a 94 MiB W took
// 0.4-0.7 s (benchmarks/results/huge_pages_creation.md). So by default one background thread
// of the library collapses the weights, a 2 MiB block at a time, while the session is already
// usable; ICL_ONNX_HUGE_PAGES=sync collapses during session creation instead, and
// ICL_ONNX_HUGE_PAGES=0 not at all.
#pragma once

#include <cstddef>
#include <cstdint>

namespace icl::cpu {

// A request to collapse one weight; destroying it cancels what is not done yet and waits for
// the block in progress, so no block of a freed W is collapsed afterwards.
class HugePages {
 public:
  HugePages() = default;
  HugePages(const HugePages&) = delete;
  HugePages& operator=(const HugePages&) = delete;
  ~HugePages();

  // Asks for the blocks wholly inside [data, data + bytes) to be collapsed, as
  // ICL_ONNX_HUGE_PAGES says (see above); does nothing on other systems. In a child of fork()
  // the collapse runs in the calling thread (the parent's thread does not exist there).
  void Request(const void* data, size_t bytes);

 private:
  uint64_t ticket_ = 0;  // the background job, 0 when none
};

}  // namespace icl::cpu
