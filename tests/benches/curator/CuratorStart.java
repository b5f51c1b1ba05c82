// Apache Curator's TestingServer and TestingCluster measured the way
// embed_start.rs measures corral::Server and corral::Cluster, driven by the
// Rust bench over stdin so that both targets alternate round by round inside
// one run. One JVM for the whole run: after its warm-up rounds the figures
// are warm-JVM figures, what a test suite sees from its second test on.
//
// Commands (one per line on stdin), each answered by "<name> <value>" lines
// and then "done":
//   first    the first TestingServer start in this JVM, to its first write
//   server   TestingServer: start to first acknowledged write, then close
//   cluster  TestingCluster(3): the same through the all-members connect string
//   probe    TestingCluster(3): start to the first write of fresh sessions tried
//            every 10 ms on each member in turn (the servers' readiness, free
//            of the client's reconnect backoff)
//   rss      10 TestingServers with a session and a few writes each: RSS delta / 10
//   quit
//
// The client is the plain org.apache.zookeeper.ZooKeeper, so only curator-test
// and ZooKeeper's jars are needed.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.curator.test.TestingCluster;
import org.apache.curator.test.TestingServer;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public class CuratorStart {
    static final int SESSION_TIMEOUT_MS = 10_000;

    static double ms(long nanos) {
        return nanos / 1e6;
    }

    /** A session, returned once connected. */
    static ZooKeeper connect(String hosts) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, SESSION_TIMEOUT_MS, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
        });
        if (!connected.await(60, TimeUnit.SECONDS)) throw new IllegalStateException("no session with " + hosts);
        return zk;
    }

    /**
     * The first acknowledged create. A TestingCluster's start() does not wait
     * for an election: until a leader is up a member refuses sessions or a
     * request fails, and the client tries again, as an application's would.
     */
    static ZooKeeper firstWrite(String hosts) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            ZooKeeper zk = connect(hosts);
            try {
                zk.create("/bench", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
                return zk;
            } catch (KeeperException.ConnectionLossException | KeeperException.SessionExpiredException e) {
                zk.close();
                if (System.nanoTime() > deadline) throw e;
            }
        }
    }

    static void server(String prefix) throws Exception {
        long t0 = System.nanoTime();
        TestingServer s = new TestingServer(true);
        long started = System.nanoTime();
        ZooKeeper zk = firstWrite(s.getConnectString());
        long written = System.nanoTime();
        zk.close();
        long t1 = System.nanoTime();
        s.close(); // stops and deletes its temporary directory
        long stopped = System.nanoTime();
        System.out.println(prefix + "_start_ms " + ms(started - t0));
        System.out.println(prefix + "_first_write_ms " + ms(written - t0));
        System.out.println(prefix + "_shutdown_ms " + ms(stopped - t1));
    }

    static void cluster() throws Exception {
        long t0 = System.nanoTime();
        TestingCluster c = new TestingCluster(3);
        c.start();
        long started = System.nanoTime();
        ZooKeeper zk = firstWrite(c.getConnectString());
        long written = System.nanoTime();
        zk.close();
        long t1 = System.nanoTime();
        c.close();
        long stopped = System.nanoTime();
        System.out.println("cluster_start_ms " + ms(started - t0));
        System.out.println("cluster_first_write_ms " + ms(written - t0));
        System.out.println("cluster_shutdown_ms " + ms(stopped - t1));
    }

    /** A fresh session on one member: connected within `waitMs` and a create acknowledged, or null. */
    static ZooKeeper tryWrite(String host, long waitMs) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(host, SESSION_TIMEOUT_MS, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
        });
        try {
            if (connected.await(waitMs, TimeUnit.MILLISECONDS)) {
                zk.create("/bench", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
                return zk;
            }
        } catch (KeeperException e) {
            // not ready yet: no leader, or the session was dropped
        }
        zk.close();
        return null;
    }

    static void probe() throws Exception {
        long t0 = System.nanoTime();
        TestingCluster c = new TestingCluster(3);
        c.start();
        List<String> members = new ArrayList<>();
        for (org.apache.curator.test.InstanceSpec i : c.getInstances()) members.add(i.getConnectString());
        long deadline = t0 + TimeUnit.SECONDS.toNanos(60);
        ZooKeeper zk = null;
        for (int k = 0; zk == null; k++) {
            if (System.nanoTime() > deadline) throw new IllegalStateException("no write within 60 s");
            long attempt = System.nanoTime();
            zk = tryWrite(members.get(k % members.size()), 100);
            long left = 10 - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - attempt);
            if (zk == null && left > 0) Thread.sleep(left);
        }
        long written = System.nanoTime();
        zk.close();
        c.close();
        System.out.println("probe_first_write_ms " + ms(written - t0));
    }

    static long rssKiB() throws Exception {
        for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", ""));
        }
        throw new IllegalStateException("no VmRSS");
    }

    static long heapUsed() {
        Runtime r = Runtime.getRuntime();
        return r.totalMemory() - r.freeMemory();
    }

    static void rss(int n) throws Exception {
        System.gc();
        long rss0 = rssKiB();
        long heap0 = heapUsed();
        List<TestingServer> servers = new ArrayList<>();
        List<ZooKeeper> sessions = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            TestingServer s = new TestingServer(true);
            ZooKeeper zk = connect(s.getConnectString());
            for (int k = 0; k < 5; k++) {
                zk.create("/n" + k, new byte[100], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
            }
            servers.add(s);
            sessions.add(zk);
        }
        System.gc();
        long rss1 = rssKiB();
        long heap1 = heapUsed();
        System.out.println("rss_per_server_mib " + (rss1 - rss0) / 1024.0 / n);
        System.out.println("heap_per_server_mib " + (heap1 - heap0) / 1048576.0 / n);
        for (ZooKeeper zk : sessions) zk.close();
        for (TestingServer s : servers) s.close();
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String cmd;
        while ((cmd = in.readLine()) != null) {
            switch (cmd.trim()) {
                case "first": server("first_server"); break;
                case "server": server("server"); break;
                case "cluster": cluster(); break;
                case "probe": probe(); break;
                case "rss": rss(10); break;
                case "quit": System.exit(0); // ZooKeeper may leave non-daemon threads behind

                default: System.out.println("error unknown command " + cmd);
            }
            System.out.println("done");
            System.out.flush();
        }
    }
}
