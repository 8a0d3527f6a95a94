/* Exports DPDK's static-inline fast-path functions as real symbols for Rust. No logic:
 * each function is a direct call of the DPDK function it is named after. */
#include "shim.h"
#include <rte_prefetch.h>

uint16_t palisade_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_rx_burst(port, queue, pkts, n); }

uint16_t palisade_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_tx_burst(port, queue, pkts, n); }

struct rte_mbuf *palisade_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
void palisade_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void palisade_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n) { rte_pktmbuf_free_bulk(pkts, n); }
void *palisade_mbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t palisade_mbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t palisade_mbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
char *palisade_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
uint16_t palisade_mbuf_port(const struct rte_mbuf *m) { return m->port; }
unsigned palisade_lcore_id(void) { return rte_lcore_id(); }
uint64_t palisade_rdtsc(void) { return rte_rdtsc(); }
uint64_t palisade_tsc_hz(void) { return rte_get_tsc_hz(); }
void palisade_prefetch0(const void *p) { rte_prefetch0(p); }
int palisade_errno(void) { return rte_errno; }
uint16_t palisade_mbuf_refcnt_update(struct rte_mbuf *m, int16_t delta) { return rte_mbuf_refcnt_update(m, delta); }
unsigned int palisade_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n)
{ return rte_ring_enqueue_burst(r, objs, n, NULL); }
unsigned int palisade_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n)
{ return rte_ring_dequeue_burst(r, objs, n, NULL); }
unsigned int palisade_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
/* RTE_ETH_RSS_* are function-like macros bindgen cannot evaluate. */
uint64_t palisade_rss_hf_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
