/* The DPDK headers palisade binds to, and the shim's exported wrappers of DPDK's
 * static-inline functions. Declarations only; see shim.c. */
#ifndef PALISADE_SHIM_H
#define PALISADE_SHIM_H

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_acl.h>
#include <rte_bus_vdev.h>
#include <rte_log.h>
#include <rte_eth_ring.h>

uint16_t palisade_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t palisade_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *palisade_pktmbuf_alloc(struct rte_mempool *mp);
void palisade_pktmbuf_free(struct rte_mbuf *m);
void palisade_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n);
void *palisade_mbuf_data(struct rte_mbuf *m);
uint16_t palisade_mbuf_data_len(const struct rte_mbuf *m);
uint32_t palisade_mbuf_pkt_len(const struct rte_mbuf *m);
char *palisade_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t palisade_mbuf_port(const struct rte_mbuf *m);
unsigned palisade_lcore_id(void);
uint64_t palisade_rdtsc(void);
uint64_t palisade_tsc_hz(void);
void palisade_prefetch0(const void *p);
int palisade_errno(void);
uint16_t palisade_mbuf_refcnt_update(struct rte_mbuf *m, int16_t delta);
unsigned int palisade_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n);
unsigned int palisade_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n);
unsigned int palisade_ring_count(const struct rte_ring *r);
uint64_t palisade_rss_hf_ip_tcp_udp(void);

#endif
