// Backing a weight read in place with transparent huge pages.
#pragma once

#include <cstddef>

namespace icl::cpu {

// Asks the kernel to back every 2 MiB-aligned block that lies wholly inside
// [data, data + bytes) with a transparent huge page (Linux MADV_COLLAPSE, kernel 6.1 and
// later). Returns whether it collapsed every such block: false where it refused one, where
// there is none, on other systems, and when ICL_ONNX_HUGE_PAGES=0 is set.
//
// Why: the kernels read W where ORT placed it, across rows (the plain view) or as a stream
// that a 4 KiB page ends every 1024 floats, while MLAS reads its own packed copy. With 4 KiB
// pages each new page costs a TLB miss, and under a hypervisor a miss walks two page tables.
// Measured here (Zen 4 guest, one thread, alternated in one process, W collapsed / W in
// 4 KiB pages): K=768, N=32000, M=1, transposed 0.68; plain 768 x 32000, M=16, 0.85 (AVX2)
// and 0.87 (AVX-512); M=256, 768 x 3072, 0.98-0.99.
//
// Only blocks wholly inside the range are touched, so no memory outside W changes and the
// resident size stays the same (W's pages are all present). The content never changes, so
// this cannot fail a call: a refusal (no MADV_COLLAPSE, no free huge page, a file mapping the
// kernel will not collapse) leaves W as it was. It costs a copy of W once, at session
// creation. A W that ORT maps from an external data file is page cache, which Linux collapses
// only when built with CONFIG_READ_ONLY_THP_FOR_FS.
bool CollapseToHugePages(const void* data, size_t bytes);

}  // namespace icl::cpu
