/*
 * tests/gpu/ktrace.c: a CUPTI injection library that writes every kernel's
 * start and end on the device (graph replays included) to a CSV file, for
 * tests/gpu/ktrace.py: where a step's time goes under its real load and
 * clock, the idle time between kernels, the two lanes' overlap. nsys is not
 * usable on the GPU machine (tests/gpu/run.sh ktrace).
 *
 *   cc -O2 -shared -fPIC -o libktrace.so ktrace.c -lcupti
 *   CUDA_INJECTION64_PATH=$PWD/libktrace.so KTRACE_OUT=k.csv sd-cli bench ...
 *
 * One line a kernel: start_ns,end_ns,stream,graph,node,grid,block,regs,name;
 * memsets and copies as [memset] / [memcpy S>D] with their bytes as grid.
 */
#include <cupti.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KT_BUF (8u << 20)

static FILE *kt_out;
static unsigned long long kt_dropped;

static void CUPTIAPI
kt_request(uint8_t **buf, size_t *size, size_t *max_records)
{
    *buf = aligned_alloc(8, KT_BUF);
    *size = *buf ? KT_BUF : 0;
    *max_records = 0;
}

/* a line's first five fields: start, end, stream, graph, node */
static void
kt_head(uint64_t start, uint64_t end, uint32_t stream, uint32_t graph,
    uint64_t node)
{
    fprintf(kt_out, "%llu,%llu,%u,%u,%llu,", (unsigned long long) start,
            (unsigned long long) end, stream, graph,
            (unsigned long long) node);
}

static void CUPTIAPI
kt_complete(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
    size_t valid)
{
    CUpti_Activity *rec = NULL;
    size_t          dropped = 0;

    (void) ctx;
    (void) size;
    while (kt_out
           && cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS)
    {
        if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
            const CUpti_ActivityMemset4 *m = (const void *) rec;

            kt_head(m->start, m->end, m->streamId, m->graphId,
                    m->graphNodeId);
            fprintf(kt_out, "%llu,0,0,[memset]\n",
                    (unsigned long long) m->bytes);
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
            const CUpti_ActivityMemcpy6 *m = (const void *) rec;

            kt_head(m->start, m->end, m->streamId, m->graphId,
                    m->graphNodeId);
            fprintf(kt_out, "%llu,0,0,[memcpy %u>%u]\n",
                    (unsigned long long) m->bytes, m->srcKind, m->dstKind);
        } else if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL
                   || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL)
        {
            const CUpti_ActivityKernel10 *k = (const void *) rec;

            kt_head(k->start, k->end, k->streamId, k->graphId,
                    k->graphNodeId);
            fprintf(kt_out, "%ux%ux%u,%u,%u,%s\n", k->gridX, k->gridY,
                    k->gridZ, k->blockX * k->blockY * k->blockZ,
                    (unsigned) k->registersPerThread,
                    k->name ? k->name : "?");
        }
    }
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped)
        == CUPTI_SUCCESS)
    {
        kt_dropped += dropped;
    }
    free(buf);
}

static void
kt_flush(void)
{
    cuptiActivityFlushAll(1);
    if (kt_out) {
        if (kt_dropped) {
            fprintf(stderr, "ktrace: %llu records dropped\n", kt_dropped);
        }
        fclose(kt_out);
        kt_out = NULL;
    }
}

int
InitializeInjection(void)
{
    const char *path = getenv("KTRACE_OUT");

    kt_out = fopen(path && *path ? path : "ktrace.csv", "w");
    if (!kt_out) {
        perror("ktrace");
        return 0;
    }
    fprintf(kt_out, "start,end,stream,graph,node,grid,block,regs,name\n");
    if (cuptiActivityRegisterCallbacks(kt_request, kt_complete)
            != CUPTI_SUCCESS
        || cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
            != CUPTI_SUCCESS
        || cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS
        || cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS)
    {
        fprintf(stderr, "ktrace: CUPTI activity not enabled\n");
        fclose(kt_out);
        kt_out = NULL;
        return 0;
    }
    atexit(kt_flush);
    return 1;
}
