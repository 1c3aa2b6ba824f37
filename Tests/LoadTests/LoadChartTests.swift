import Foundation
import Testing
@testable import stepfleet
#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite struct LoadChartTests {
    /// Counts the elements of a document; fails on one that is not well-formed XML.
    final class Elements: NSObject, XMLParserDelegate {
        var names: [String: Int] = [:]
        var texts: [String] = []
        var current = ""
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            names[name, default: 0] += 1
            current = ""
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "text" { texts.append(current) }
        }
    }

    func parse(_ svg: String) throws -> Elements {
        let parser = XMLParser(data: Data(svg.utf8))
        let elements = Elements()
        parser.delegate = elements
        #expect(parser.parse(), "not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        return elements
    }

    @Test(.timeLimit(.minutes(1))) func thePictureHasBothPanelsEverySeriesAndTheFigures() throws {
        let report = LoadReport.make(
            settings: LoadReportTests.settings, startedAt: Date(), wallSeconds: 9, submitted: 4, submitErrors: [:], samples: LoadReportTests.samples,
            unfinished: 0, submitLatencies: [], bucketSeconds: 1)
        let svg = LoadChart.svg(report)
        let elements = try parse(svg)
        #expect(svg.hasPrefix("<?xml"))
        #expect(elements.names["svg"] == 1)
        // Three throughput lines and four latency lines, each with a legend entry.
        #expect((elements.names["polyline"] ?? 0) + (elements.names["circle"] ?? 0) >= 7)
        #expect(elements.names["line"] ?? 0 >= 7)
        for legend in ["steps finished/s", "changes finished/s", "changes created/s", "change p99", "change p50", "queue p99", "queue p50"] {
            #expect(elements.texts.contains(legend), "no legend \(legend)")
        }
        #expect(elements.texts.contains { $0.contains("0.57 changes/s") && $0.contains("change p50 2.00 s") })
        // Nothing outside: no scripts, no links, no images.
        #expect(!svg.contains("<script") && !svg.contains("href") && !svg.contains("<image"))
    }

    @Test(.timeLimit(.minutes(1))) func longLatenciesAreDrawnInSeconds() throws {
        let short = LoadReport.make(
            settings: LoadReportTests.settings, startedAt: Date(), wallSeconds: 9, submitted: 4, submitErrors: [:], samples: LoadReportTests.samples,
            unfinished: 0, submitLatencies: [])
        #expect(try parse(LoadChart.svg(short)).texts.contains { $0.hasPrefix("Latency (ms)") })
        let slow = LoadReportTests.samples.map { sample in
            var sample = sample
            sample.finishedAt = sample.createdAt + 30
            return sample
        }
        let long = LoadReport.make(
            settings: LoadReportTests.settings, startedAt: Date(), wallSeconds: 40, submitted: 4, submitErrors: [:], samples: slow, unfinished: 0, submitLatencies: [])
        let texts = try parse(LoadChart.svg(long)).texts
        #expect(texts.contains { $0.hasPrefix("Latency (s)") })
        // The axis goes up to 30 s, not 30000.
        #expect(texts.contains("30") && !texts.contains("30k"))
    }

    @Test(.timeLimit(.minutes(1))) func userTextIsEscaped() throws {
        var settings = LoadReportTests.settings
        settings.project = "<p&\"q\">"
        let report = LoadReport.make(settings: settings, startedAt: Date(), wallSeconds: 0, submitted: 0, submitErrors: [:], samples: [], unfinished: 0, submitLatencies: [])
        let elements = try parse(LoadChart.svg(report))
        #expect(elements.texts.contains { $0.contains("<p&\"q\">") })
    }

    @Test(.timeLimit(.minutes(1))) func ticksAreRoundAndCoverTheMaximum() {
        #expect(LoadChart.ticks(upTo: 7) == [0, 2, 4, 6, 8])
        #expect(LoadChart.ticks(upTo: 100) == [0, 20, 40, 60, 80, 100])
        #expect(LoadChart.ticks(upTo: 0) == [0, 1])
        #expect(LoadChart.ticks(upTo: 0.3).last! >= 0.3)
    }

    @Test(.timeLimit(.minutes(1))) func gapsInASeriesBreakItsLine() {
        let segments = LoadChart.segments([(0, 1), (1, nil), (2, 3), (3, 4)])
        #expect(segments.map(\.count) == [1, 2])
    }
}
