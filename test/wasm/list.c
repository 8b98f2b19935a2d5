typedef unsigned long size_t;
extern void *malloc(size_t);
extern void free(void *);
extern void *realloc(void *, size_t);
extern void *calloc(size_t, size_t);
extern unsigned char __heap_base;
size_t heap_base(void) { return (size_t)&__heap_base; }
struct node { struct node *next; int v; char pad[20]; };
int run(int n) {
  struct node *head = 0;
  for (int i = 0; i < n; i++) {
    struct node *x = malloc(sizeof *x);
    if (!x) return -1;
    x->v = i; x->next = head; head = x;
  }
  char *buf = 0;
  for (int i = 1; i < 50; i++) {
    buf = realloc(buf, (size_t)i * 1000);
    if (!buf) return -2;
    buf[i * 1000 - 1] = (char)i;
    for (int j = 1; j < i; j++) if (buf[j * 1000 - 1] != (char)j) return -3;
  }
  int *z = calloc(1000, sizeof(int));
  for (int i = 0; i < 1000; i++) if (z[i] != 0) return -4;
  free(z);
  unsigned long long s = 0;
  for (struct node *p = head; p;) { s += p->v; struct node *q = p->next; free(p); p = q; }
  free(buf);
  return (int)(s % 1000003);
}
