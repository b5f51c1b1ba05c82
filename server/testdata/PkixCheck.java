// Differential oracle for server/src/net/x509.rs: validates certificate
// chains with the JDK, the way Apache ZooKeeper's X509Util does (a PKIX
// TrustManagerFactory over PKIXBuilderParameters, revocation off), and with
// a bare PKIX CertPathValidator.
//
// Usage: java PkixCheck DIR...   each DIR holds anchors.pem and chain.pem
// (end entity first). Prints, per DIR: name TAB jsse TAB pkix TAB reasons,
// verdicts ACCEPT or REJECT.
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.*;
import java.util.*;
import javax.net.ssl.CertPathTrustManagerParameters;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

public class PkixCheck {
    static List<X509Certificate> read(CertificateFactory cf, Path p) throws Exception {
        List<X509Certificate> out = new ArrayList<>();
        try (InputStream in = Files.newInputStream(p)) {
            for (Certificate c : cf.generateCertificates(in)) out.add((X509Certificate) c);
        }
        return out;
    }

    static String why(Throwable e) {
        String s = e.getClass().getSimpleName() + ": " + e.getMessage();
        while (e.getCause() != null && e.getCause() != e) {
            e = e.getCause();
            s += " <- " + e.getClass().getSimpleName() + ": " + e.getMessage();
        }
        return s.replace('\t', ' ').replace('\n', ' ');
    }

    public static void main(String[] args) throws Exception {
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        for (String dir : args) {
            Path d = Paths.get(dir);
            String jsse = "ACCEPT", pkix = "ACCEPT", jsseWhy = "", pkixWhy = "";
            try {
                List<X509Certificate> anchors = read(cf, d.resolve("anchors.pem"));
                List<X509Certificate> chain = read(cf, d.resolve("chain.pem"));
                try {
                    KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
                    ks.load(null, null);
                    int i = 0;
                    for (X509Certificate a : anchors) ks.setCertificateEntry("anchor" + i++, a);
                    PKIXBuilderParameters p = new PKIXBuilderParameters(ks, new X509CertSelector());
                    p.setRevocationEnabled(false);
                    TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
                    tmf.init(new CertPathTrustManagerParameters(p));
                    X509TrustManager tm = null;
                    for (TrustManager t : tmf.getTrustManagers()) {
                        if (t instanceof X509TrustManager) tm = (X509TrustManager) t;
                    }
                    tm.checkClientTrusted(chain.toArray(new X509Certificate[0]), "EC");
                } catch (Exception e) {
                    jsse = "REJECT";
                    jsseWhy = why(e);
                }
                try {
                    Set<TrustAnchor> tas = new HashSet<>();
                    for (X509Certificate a : anchors) tas.add(new TrustAnchor(a, null));
                    PKIXParameters p = new PKIXParameters(tas);
                    p.setRevocationEnabled(false);
                    CertPathValidator.getInstance("PKIX").validate(cf.generateCertPath(chain), p);
                } catch (Exception e) {
                    pkix = "REJECT";
                    pkixWhy = why(e);
                }
            } catch (Exception e) {
                jsse = pkix = "REJECT";
                jsseWhy = pkixWhy = "unparseable: " + why(e);
            }
            System.out.println(d.getFileName() + "\t" + jsse + "\t" + pkix + "\t" + jsseWhy + "\t" + pkixWhy);
        }
    }
}
