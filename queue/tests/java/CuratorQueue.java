// Drives Apache Curator's DistributedQueue for queue/tests/interop.rs.
//   put  HOSTS PATH HEX...   one put per item (bytes given in hex), in order
//   take HOSTS PATH N SECS [LOCKPATH]
//                            consume up to N items, print each as hex on its
//                            own line, stop after SECS without a new one;
//                            with LOCKPATH, as a lock-based consumer
//   putprio HOSTS PATH PRIO:HEX...   DistributedPriorityQueue puts
//   takeprio HOSTS PATH N SECS       DistributedPriorityQueue consumer
//   bench HOSTS PATH WORKERS SECS    queue/benches/e2e.rs: WORKERS producers
//                            and WORKERS lock-based consumers, each with its
//                            own client, for SECS; prints "msgs secs p50_ms p99_ms"
// Items pass through an identity QueueSerializer so the bytes compared are
// exactly the bytes put.
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.queue.DistributedPriorityQueue;
import org.apache.curator.framework.recipes.queue.DistributedQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.queue.QueueSerializer;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;

public class CuratorQueue {
    static final QueueSerializer<byte[]> IDENTITY = new QueueSerializer<byte[]>() {
        public byte[] serialize(byte[] item) { return item; }
        public byte[] deserialize(byte[] bytes) { return bytes; }
    };

    static byte[] unhex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return out;
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static CuratorFramework connect(String hosts) throws InterruptedException {
        CuratorFramework c = CuratorFrameworkFactory.newClient(hosts, 10000, 5000, new ExponentialBackoffRetry(100, 5));
        c.start();
        if (!c.blockUntilConnected(15, TimeUnit.SECONDS)) throw new IllegalStateException("not connected to " + hosts);
        return c;
    }

    /// Producers put their send time (ms) as fast as they can; consumers
    /// (lockPath: a message is removed only after consumeMessage returns,
    /// Curator's at-least-once mode, like our claim + ack) record the age.
    static void bench(String hosts, String path, int workers, double secs) throws Exception {
        java.util.concurrent.ConcurrentLinkedQueue<Long> ages = new java.util.concurrent.ConcurrentLinkedQueue<>();
        java.util.concurrent.atomic.AtomicLong produced = new java.util.concurrent.atomic.AtomicLong();
        java.util.List<AutoCloseable> open = new java.util.ArrayList<>();
        for (int w = 0; w < workers; w++) {
            CuratorFramework c = connect(hosts);
            QueueConsumer<byte[]> consumer = new QueueConsumer<byte[]>() {
                public void consumeMessage(byte[] m) {
                    ages.add(System.currentTimeMillis() - java.nio.ByteBuffer.wrap(m).getLong());
                }
                public void stateChanged(CuratorFramework c, ConnectionState s) {}
            };
            DistributedQueue<byte[]> q = QueueBuilder.builder(c, consumer, IDENTITY, path).lockPath(path + "-locks").buildQueue();
            q.start();
            open.add(q);
            open.add(c);
        }
        long t0 = System.nanoTime();
        long end = t0 + (long) (secs * 1e9);
        Thread[] producers = new Thread[workers];
        for (int w = 0; w < workers; w++) {
            CuratorFramework c = connect(hosts);
            DistributedQueue<byte[]> q = QueueBuilder.builder(c, null, IDENTITY, path).putInBackground(false).buildQueue();
            q.start();
            open.add(q);
            open.add(c);
            producers[w] = new Thread(() -> {
                try {
                    while (System.nanoTime() < end) {
                        q.put(java.nio.ByteBuffer.allocate(8).putLong(System.currentTimeMillis()).array());
                        produced.incrementAndGet();
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            producers[w].start();
        }
        for (Thread t : producers) t.join();
        // Let the consumers finish what was put (at most 60 s more).
        long drainEnd = System.nanoTime() + 60_000_000_000L;
        while (ages.size() < produced.get() && System.nanoTime() < drainEnd) Thread.sleep(5);
        double elapsed = (System.nanoTime() - t0) / 1e9;
        long[] v = ages.stream().mapToLong(Long::longValue).sorted().toArray();
        long p50 = v.length == 0 ? 0 : v[v.length / 2], p99 = v.length == 0 ? 0 : v[Math.min(v.length - 1, v.length * 99 / 100)];
        System.out.println(v.length + " " + elapsed + " " + p50 + " " + p99);
        System.out.flush();
        for (int i = open.size() - 1; i >= 0; i--) {
            try { open.get(i).close(); } catch (Exception e) { }
        }
    }

    public static void main(String[] a) throws Exception {
        String mode = a[0], hosts = a[1], path = a[2];
        if (mode.equals("bench")) {
            bench(hosts, path, Integer.parseInt(a[3]), Double.parseDouble(a[4]));
            System.exit(0);
        }
        CuratorFramework client = CuratorFrameworkFactory.newClient(hosts, 10000, 5000, new ExponentialBackoffRetry(100, 5));
        client.start();
        if (!client.blockUntilConnected(15, TimeUnit.SECONDS)) throw new IllegalStateException("not connected to " + hosts);
        if (mode.equals("put")) {
            // Synchronous puts: each item is on the server before the next.
            DistributedQueue<byte[]> q = QueueBuilder.builder(client, null, IDENTITY, path).putInBackground(false).buildQueue();
            q.start();
            for (int i = 3; i < a.length; i++) q.put(unhex(a[i]));
            q.close();
        } else if (mode.equals("putprio")) {
            DistributedPriorityQueue<byte[]> q = QueueBuilder.builder(client, null, IDENTITY, path).putInBackground(false).buildPriorityQueue(0);
            q.start();
            for (int i = 3; i < a.length; i++) {
                String[] pv = a[i].split(":", 2);
                q.put(unhex(pv[1]), Integer.parseInt(pv[0]));
            }
            q.close();
        } else if (mode.equals("takeprio")) {
            int n = Integer.parseInt(a[3]);
            long idle = Long.parseLong(a[4]);
            LinkedBlockingQueue<byte[]> got = new LinkedBlockingQueue<>();
            QueueConsumer<byte[]> consumer = new QueueConsumer<byte[]>() {
                public void consumeMessage(byte[] m) { got.add(m); }
                public void stateChanged(CuratorFramework c, ConnectionState s) {}
            };
            DistributedPriorityQueue<byte[]> q = QueueBuilder.builder(client, consumer, IDENTITY, path).buildPriorityQueue(0);
            q.start();
            for (int i = 0; i < n; i++) {
                byte[] m = got.poll(idle, TimeUnit.SECONDS);
                if (m == null) break;
                System.out.println(hex(m));
            }
            System.out.flush();
            q.close();
        } else if (mode.equals("take")) {
            int n = Integer.parseInt(a[3]);
            long idle = Long.parseLong(a[4]);
            LinkedBlockingQueue<byte[]> got = new LinkedBlockingQueue<>();
            QueueConsumer<byte[]> consumer = new QueueConsumer<byte[]>() {
                public void consumeMessage(byte[] m) { got.add(m); }
                public void stateChanged(CuratorFramework c, ConnectionState s) {}
            };
            QueueBuilder<byte[]> b = QueueBuilder.builder(client, consumer, IDENTITY, path);
            if (a.length > 5) b = b.lockPath(a[5]);
            DistributedQueue<byte[]> q = b.buildQueue();
            q.start();
            for (int i = 0; i < n; i++) {
                byte[] m = got.poll(idle, TimeUnit.SECONDS);
                if (m == null) break;
                System.out.println(hex(m));
            }
            System.out.flush();
            q.close();
        } else {
            throw new IllegalArgumentException("mode " + mode);
        }
        client.close();
    }
}
